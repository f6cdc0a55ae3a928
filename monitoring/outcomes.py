"""Performance in the loop: served predictions joined with the arrests the lake later recorded.

The API logs every prediction with the incident's Socrata `id` when the client sends it. After
each ETL the lake holds the latest arrest flag for that id (late arrests are re-pulled and
upserted), so the monitor can score what the champion actually said against what happened:

- `join_outcomes`: each logged prediction gets the lake's current flag for its id (`outcome`),
  whether that flag counts as final yet (`mature`: the incident is at least
  CRIMEFLOW_LABEL_MATURITY_DAYS old) and its window (the incident's calendar month).
- `assess_performance`: per window, *realized* performance on the matured outcomes (ROC-AUC,
  PR-AUC, arrest rate, calibration gap, bootstrap intervals), the *CBPE estimate* over the rows
  whose outcome is not final yet (or all rows, when every one is), and the `/feedback` labels
  scored apart (they arrive early and lean towards the arrests recorded first). The window's
  PR-AUC (realized when there is enough of it, else estimated) is compared with the champion's
  holdout PR-AUC; a drop beyond CRIMEFLOW_PERFORMANCE_MAX_DROP marks the window degraded.

The estimate assumes P(arrest | incident) is what the champion learnt: it follows a changed mix
of incidents but cannot see concept drift (the same incidents ending in arrests at other rates).
Only realized performance shows that, once the labels have matured.
"""

from __future__ import annotations

import html as html_text
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from monitoring.maturity import mature_mask
from monitoring.performance import estimate_performance, realized_performance

OUTCOME = "outcome"
MATURE = "mature"
WINDOW = "window"
FEEDBACK = "feedback_arrest"
METRIC = "pr_auc"
REALIZED = "realized"
ESTIMATED = "estimated"


@dataclass(frozen=True)
class Baseline:
    """The champion's holdout figures (registry tags) that each window is held against."""

    model_version: str | None
    pr_auc: float | None
    roc_auc: float | None = None

    @classmethod
    def from_tags(cls, version: str | None, tags: dict[str, str]) -> Baseline:
        """Read `holdout.pr_auc` / `holdout.roc_auc` from a version's tags (None if absent)."""
        pr_auc, roc_auc = tags.get("holdout.pr_auc"), tags.get("holdout.roc_auc")
        return cls(version, _number(pr_auc), _number(roc_auc))


def _number(text: str | None) -> float | None:
    """A tag's float value; None for a missing or unreadable one."""
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class WindowPerformance:
    """One window (incident month): row counts, realized / estimated / feedback figures."""

    window: str
    rows: int
    with_outcome: int
    mature: int
    realized: dict[str, Any] | None
    estimated: dict[str, Any] | None
    feedback: dict[str, Any] | None
    basis: str | None
    pr_auc: float | None
    drop: float | None
    degraded: bool


@dataclass(frozen=True)
class PerformanceCheck:
    """Every window's performance against the champion's holdout figures (JSON-ready)."""

    model_version: str | None
    baseline_pr_auc: float | None
    baseline_roc_auc: float | None
    max_drop: float
    maturity_days: int
    as_of: str
    windows: list[WindowPerformance] = field(default_factory=list)

    @property
    def degraded(self) -> list[WindowPerformance]:
        """The windows whose PR-AUC fell below the baseline by more than `max_drop`."""
        return [w for w in self.windows if w.degraded]

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the check."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PerformanceCheck:
        """Read back what `as_dict` wrote."""
        windows = [WindowPerformance(**w) for w in data.get("windows", [])]
        return cls(**{**data, "windows": windows})


def latest_flags(lake_rows: pd.DataFrame) -> pd.Series:
    """The lake's arrest flag by `id`, the latest `updated_on` winning (boolean, indexed by id)."""
    missing = [c for c in ("id", "arrest") if c not in lake_rows.columns]
    if missing:
        raise ValueError(f"lake rows lack column(s) {', '.join(missing)}")
    rows = lake_rows.dropna(subset=["id", "arrest"])
    if "updated_on" in rows.columns:
        rows = rows.sort_values("updated_on", kind="mergesort")
    rows = rows.drop_duplicates("id", keep="last")
    return pd.Series(
        rows["arrest"].astype(bool).to_numpy(), index=rows["id"].astype("int64").to_numpy()
    )


def join_outcomes(
    predictions: pd.DataFrame, flags: pd.Series, as_of: pd.Timestamp, maturity_days: int
) -> pd.DataFrame:
    """The logged predictions with `outcome` (lake flag by id, NA when unknown), `mature` and
    `window` (incident month); rows without an id or incident date get no outcome."""
    missing = [c for c in ("id", "date", "probability") if c not in predictions.columns]
    if missing:
        raise ValueError(f"prediction log rows lack column(s) {', '.join(missing)}")
    joined = predictions.copy()
    ids = pd.to_numeric(joined["id"], errors="coerce").astype("Int64")
    outcome = ids.map(flags) if len(flags) else pd.Series(pd.NA, index=joined.index)
    joined[OUTCOME] = outcome.astype("boolean")
    dates = pd.to_datetime(joined["date"], errors="coerce")
    joined[MATURE] = mature_mask(dates, as_of, maturity_days)
    joined[WINDOW] = dates.dt.strftime("%Y-%m")
    return joined


def _realized(labels: pd.Series, proba: pd.Series, min_rows: int, seed: int) -> dict | None:
    """Realized figures on labelled rows; None with fewer than `min_rows` or a single class."""
    known = labels.notna()
    if int(known.sum()) < max(min_rows, 2) or labels[known].nunique() < 2:
        return None
    figures = realized_performance(
        labels[known].astype(bool).to_numpy(), proba[known].to_numpy(), seed=seed
    )
    return figures.as_dict()


def _estimated(proba: pd.Series, min_rows: int, seed: int) -> dict | None:
    """The CBPE estimate; None with too few rows or no spread of probabilities."""
    values = proba.dropna().to_numpy()
    if len(values) < max(min_rows, 2) or np.ptp(values) == 0:
        return None
    return estimate_performance(values, seed=seed).as_dict()


def window_performance(
    rows: pd.DataFrame, window: str, baseline: Baseline, max_drop: float, min_rows: int
) -> WindowPerformance:
    """One window's figures: realized on matured outcomes, CBPE on the rest, feedback apart."""
    proba = pd.to_numeric(rows["probability"], errors="coerce")
    matured = rows[MATURE] & rows[OUTCOME].notna()
    realized = _realized(rows[OUTCOME].where(matured), proba, min_rows, seed=1)
    pending = ~matured
    # The estimate covers what realized cannot yet; with every label final, all rows (so the
    # two can be compared: their gap is what the estimate could not see).
    estimated = _estimated(proba[pending] if pending.sum() >= min_rows else proba, min_rows, 2)
    feedback = None
    if FEEDBACK in rows.columns:
        feedback = _realized(rows[FEEDBACK].astype("boolean"), proba, min_rows, seed=3)
    basis, value = (
        (REALIZED, realized[METRIC]["value"])
        if realized
        else (ESTIMATED, estimated[METRIC]["value"])
        if estimated
        else (None, None)
    )
    drop = None if value is None or baseline.pr_auc is None else baseline.pr_auc - value
    degraded = drop is not None and drop > max_drop
    if degraded and basis == ESTIMATED and estimated:
        # An estimate alone carries its sampling error (a few hundredths on 200 rows) and moves
        # with the input mix: it marks a window only when its whole interval is below the line.
        degraded = baseline.pr_auc - estimated[METRIC]["high"] > max_drop  # type: ignore[operator]
    return WindowPerformance(
        window=window,
        rows=len(rows),
        with_outcome=int(rows[OUTCOME].notna().sum()),
        mature=int(matured.sum()),
        realized=realized,
        estimated=estimated,
        feedback=feedback,
        basis=basis,
        pr_auc=value,
        drop=drop,
        degraded=degraded,
    )


def assess_performance(
    joined: pd.DataFrame,
    baseline: Baseline,
    *,
    max_drop: float,
    min_rows: int,
    maturity_days: int,
    as_of: datetime,
) -> PerformanceCheck:
    """Every window of `join_outcomes`' frame (oldest first) against the champion's baseline."""
    windows = [
        window_performance(rows, str(name), baseline, max_drop, min_rows)
        for name, rows in joined.dropna(subset=[WINDOW]).groupby(WINDOW, sort=True)
    ]
    return PerformanceCheck(
        model_version=baseline.model_version,
        baseline_pr_auc=baseline.pr_auc,
        baseline_roc_auc=baseline.roc_auc,
        max_drop=max_drop,
        maturity_days=maturity_days,
        as_of=as_of.isoformat(),
        windows=windows,
    )


def degraded_payload(
    check: PerformanceCheck, window: WindowPerformance, report_id: str, report_url: str | None
) -> dict[str, Any]:
    """The `crimeflow.performance.degraded` payload: strings and numbers only (templating)."""
    return {
        "metric": METRIC,
        "basis": window.basis,
        "value": window.pr_auc,
        "champion_baseline": check.baseline_pr_auc,
        "drop": window.drop,
        "max_drop": check.max_drop,
        "window": window.window,
        "rows": window.rows,
        "mature_rows": window.mature,
        "model_version": check.model_version,
        "report_id": report_id,
        "report_url": report_url,
    }


def _figure(figures: dict[str, Any] | None, name: str = METRIC) -> str:
    """`value [low, high]` of one figure, or a dash."""
    if not figures:
        return "–"
    interval = figures[name]
    return f"{interval['value']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def _rows(check: PerformanceCheck) -> list[list[str]]:
    """One table row per window: counts, the three PR-AUCs, the drop and the verdict."""
    return [
        [
            w.window,
            f"{w.rows:,}",
            f"{w.mature:,}",
            _figure(w.realized),
            _figure(w.estimated),
            _figure(w.feedback),
            "–" if w.drop is None else f"{w.drop:+.3f} ({w.basis})",
            "DEGRADED" if w.degraded else "ok",
        ]
        for w in check.windows
    ]


HEADERS = (
    "window (incident month)",
    "rows",
    "mature outcomes",
    "realized PR-AUC",
    "estimated PR-AUC (CBPE)",
    "feedback PR-AUC",
    "drop vs champion",
    "verdict",
)
CBPE_CAVEAT = (
    "The estimate (CBPE) trusts the champion's probabilities: it follows a changed mix of "
    "incidents but cannot see concept drift (the same incidents ending in arrests at other "
    "rates). Only realized performance on matured labels shows that."
)


def _baseline_text(check: PerformanceCheck) -> str:
    """One sentence: the champion, its holdout PR-AUC, the allowed drop and the maturity."""
    baseline = "unknown" if check.baseline_pr_auc is None else f"{check.baseline_pr_auc:.3f}"
    return (
        f"Champion v{check.model_version}: holdout PR-AUC {baseline}; a window is degraded when "
        f"its PR-AUC is more than {check.max_drop:.3f} below. Outcomes count as final "
        f"{check.maturity_days} days after the incident (as of {check.as_of})."
    )


def performance_markdown(check: PerformanceCheck) -> str:
    """The Prefect artifact: the per-window table, the baseline and the CBPE caveat."""
    lines = [f"# Performance — model v{check.model_version}", "", _baseline_text(check), ""]
    if not check.windows:
        lines.append("No logged predictions with an incident date in the lookback.")
    else:
        lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(row) + " |" for row in _rows(check)]
    lines += ["", CBPE_CAVEAT, "Feedback labels (POST /feedback) are shown apart."]
    return "\n".join(lines)


def performance_html(check: PerformanceCheck) -> str:
    """The report's performance section as an HTML fragment (escaped)."""
    head = "".join(f"<th>{html_text.escape(h)}</th>" for h in HEADERS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html_text.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in _rows(check)
    )
    return (
        "<section id='crimeflow-performance' style='font-family:sans-serif;margin:1em'>"
        "<h2>Performance: estimated and realized</h2>"
        f"<p>{html_text.escape(_baseline_text(check))}</p>"
        f"<table border='1' cellpadding='4'><tr>{head}</tr>{body}</table>"
        f"<p>{html_text.escape(CBPE_CAVEAT)} Feedback labels are shown apart.</p></section>"
    )


def with_section(page: str, section: str) -> str:
    """`page` with `section` placed before its closing body tag (appended if it has none)."""
    cut = page.lower().rfind("</body>")
    return page + section if cut < 0 else page[:cut] + section + page[cut:]
