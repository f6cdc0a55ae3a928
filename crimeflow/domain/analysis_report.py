"""The analyst report's two renderings: a Prefect markdown artifact and a self-contained HTML page.

The HTML carries its figures inline (base64 PNG), so the one file opens anywhere: from the
lake, from `GET /analysis/latest`, or attached to an e-mail.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable

from crimeflow.domain.analysis import MIN_EXPECTED, POOLED_LABEL, Analysis, ChiSquare, Rate, Trend

NO_MAP = "no community-area boundaries in the lake: the map is left out"


def pct(value: float) -> str:
    """A rate as a percentage with one decimal."""
    return f"{value * 100:.1f} %"


def p_text(value: float) -> str:
    """A p-value in two significant digits (below double precision: '< 1e-300')."""
    return "< 1e-300" if value < 1e-300 else f"{value:.2g}"


def rate_text(rate: Rate) -> str:
    """'17.8 % (17.3-18.3 %)': a rate and its 95 % interval."""
    return f"{pct(rate.rate)} ({rate.low * 100:.1f}-{rate.high * 100:.1f} %)"


def chi_text(test: ChiSquare | None, what: str) -> str:
    """One line on a chi-square test."""
    if test is None:
        return f"chi-square of arrest by {what}: not computed (fewer than two categories)"
    pooled = ""
    if test.pooled:
        action = "left out" if test.dropped else f"pooled as '{POOLED_LABEL}'"
        pooled = f"; {len(test.pooled)} sparse categories {action}"
    return (
        f"chi-square of arrest by {what}: {test.statistic:,.1f} with {test.dof} degrees of "
        f"freedom, p {p_text(test.p_value)} (n {test.incidents:,}, smallest expected count "
        f"{test.min_expected:.1f}{pooled})"
    )


def trend_text(trend: Trend | None) -> str:
    """One line on the trend test."""
    if trend is None:
        return "trend of the arrest rate: needs two or more months in the window"
    return (
        f"trend of the monthly arrest rate over {trend.months[0]}..{trend.months[-1]}: "
        f"{trend.slope_per_month * 100:+.2f} points per month (SE {trend.standard_error * 100:.2f})"
        f", Z {trend.z:.1f}, p {p_text(trend.p_value)} (Cochran-Armitage)"
    )


def headline(analysis: Analysis) -> list[str]:
    """The report's key lines, shared by the markdown and the HTML."""
    overall = analysis.overall
    return [
        f"incidents with a known arrest flag: {overall.incidents:,} "
        f"({analysis.unlabelled:,} without one, left out)",
        f"arrests: {overall.arrests:,}; arrest rate {rate_text(overall)} (95 % Wilson interval)",
        chi_text(analysis.chi_square_district, "district"),
        chi_text(analysis.chi_square_type, "primary type"),
        trend_text(analysis.trend),
    ]


def _markdown_table(title: str, rates: Iterable[Rate]) -> list[str]:
    """A markdown table of rates."""
    rows = [f"| {r.group} | {r.incidents:,} | {r.arrests:,} | {rate_text(r)} |" for r in rates]
    return [
        "",
        f"### {title}",
        "",
        "| group | incidents | arrests | arrest rate (95 % CI) |",
        "|---|---:|---:|---|",
        *rows,
    ]


def report_markdown(analysis: Analysis, html_url: str | None = None) -> str:
    """The Prefect markdown artifact: key numbers, tests and the smaller tables."""
    lines = [
        f"# Analyst report {analysis.month}",
        "",
        f"Window: {', '.join(analysis.window)}",
        "",
        *(f"- {line}" for line in headline(analysis)),
        *(f"- note: {note}" for note in analysis.notes),
    ]
    if html_url:
        lines += ["", f"Full report with plots and every table: {html_url}"]
    lines += _markdown_table("By month", analysis.by_month)
    lines += _markdown_table("By weekday", analysis.by_weekday)
    lines += _markdown_table("By district", analysis.by_district)
    lines += _markdown_table("Ten most frequent types", analysis.by_type[:10])
    return "\n".join(lines) + "\n"


def _html_table(title: str, rates: Iterable[Rate]) -> str:
    """An HTML table of rates."""
    rows = "".join(
        f"<tr><td>{html.escape(r.group)}</td><td>{r.incidents:,}</td><td>{r.arrests:,}</td>"
        f"<td>{pct(r.rate)}</td><td>{r.low * 100:.1f}-{r.high * 100:.1f} %</td></tr>"
        for r in rates
    )
    return (
        f"<h3>{html.escape(title)}</h3><table><tr><th>group</th><th>incidents</th>"
        f"<th>arrests</th><th>arrest rate</th><th>95 % CI</th></tr>{rows}</table>"
    )


def _image(png: bytes | None, alt: str, missing: str) -> str:
    """An inline PNG, or a sentence saying why there is none."""
    if png is None:
        return f"<p class='missing'>{html.escape(missing)}</p>"
    encoded = base64.b64encode(png).decode()
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{encoded}'>"


STYLE = (
    "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;"
    "padding:2px 8px;text-align:right}td:first-child{text-align:left}"
    ".missing{color:#a33}img{max-width:100%}"
)


def report_html(
    analysis: Analysis, heat_png: bytes | None, map_png: bytes | None, generated_at: str
) -> str:
    """The self-contained HTML report: key numbers, tests, both plots and every table."""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in headline(analysis))
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in analysis.notes)
    tables = "".join(
        _html_table(title, rates)
        for title, rates in (
            ("By month (the window)", analysis.by_month),
            ("By weekday", analysis.by_weekday),
            ("By hour", analysis.by_hour),
            ("By district", analysis.by_district),
            ("By primary type", analysis.by_type),
            ("By community area", analysis.by_area),
        )
    )
    month = html.escape(analysis.month)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>crimeflow analyst report {month}</title><style>{STYLE}</style></head><body>"
        f"<h1>Analyst report {month}</h1>"
        f"<p>Window {html.escape(', '.join(analysis.window))}; generated "
        f"{html.escape(generated_at)}. Chi-square tests pool categories whose expected counts "
        f"fall below {MIN_EXPECTED:g}.</p><h2>Key numbers and tests</h2><ul>{items}</ul>"
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + "<h2>When arrests happen</h2>"
        + _image(heat_png, "arrest rate by hour and weekday", "no heat map")
        + "<h2>Where arrests happen</h2>"
        + _image(map_png, "arrest rate by community area", NO_MAP)
        + f"<h2>Tables</h2>{tables}</body></html>"
    )
