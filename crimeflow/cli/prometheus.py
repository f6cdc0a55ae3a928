"""A local Prometheus for `crimeflow up`: its config, written under $CRIMEFLOW_HOME, and its argv.

The repo's deployments/prometheus/prometheus.yml targets compose service names; on one machine
the same jobs point at 127.0.0.1 ports, and the repo's rule files are loaded by absolute path
(so the alerts and recording rules are the ones the unit tests check). Prometheus itself comes
from the distribution (`apt-get install prometheus`); without the binary `crimeflow up` runs as
before.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import deployments

# Where the repo keeps the rule files (the checkout, or the image's /app).
RULES_DIR = Path(deployments.__file__).resolve().parent / "prometheus" / "rules"
SCRAPE_INTERVAL_S = 15.0


@dataclass(frozen=True)
class ScrapeJob:
    """One Prometheus scrape job: a name, its targets (host:port) and metrics path."""

    name: str
    targets: tuple[str, ...]
    metrics_path: str = "/metrics"


def prometheus_binary() -> str | None:
    """The `prometheus` executable on PATH, if any."""
    return shutil.which("prometheus")


def rule_files(rules_dir: Path = RULES_DIR) -> list[Path]:
    """The repo's rule files (none when the package was installed without them)."""
    return sorted(rules_dir.glob("*.yml")) if rules_dir.is_dir() else []


def _seconds(value: float) -> str:
    """A Prometheus duration: whole seconds, or milliseconds below a second."""
    return f"{int(value)}s" if value >= 1 and value == int(value) else f"{int(value * 1000)}ms"


def prometheus_config(
    jobs: list[ScrapeJob], rules: list[Path], interval_s: float = SCRAPE_INTERVAL_S
) -> dict[str, Any]:
    """A prometheus.yml (as data) scraping `jobs` and evaluating `rules` every `interval_s`."""
    interval = _seconds(interval_s)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path.resolve()) for path in rules],
        "scrape_configs": [
            {
                "job_name": job.name,
                "metrics_path": job.metrics_path,
                "static_configs": [{"targets": list(job.targets)}],
            }
            for job in jobs
        ],
    }


def write_prometheus_config(folder: Path, config: dict[str, Any]) -> Path:
    """Write `config` as `folder`/prometheus.yml; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "prometheus.yml"
    path.write_text(
        "# Written by crimeflow on every start; edit deployments/prometheus instead.\n"
        + yaml.safe_dump(config, sort_keys=False),
        encoding="utf-8",
    )
    return path


def prometheus_command(binary: str, config: Path, data: Path, host: str, port: int) -> list[str]:
    """`prometheus` on `config`, keeping its TSDB in `data`, listening on host:port."""
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address={host}:{port}",
    ]
