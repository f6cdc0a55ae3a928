"""`crimeflow`: one command line for local operations."""

from __future__ import annotations

import json
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated

import typer

from crimeflow.cli.tokens import token_app
from crimeflow.contract.settings import Settings, get_settings

app = typer.Typer(help="crimeflow: Chicago arrest prediction that keeps itself healthy.")
config_app = typer.Typer(help="Inspect the effective configuration.")
soda_app = typer.Typer(help="The local Socrata (SODA 2.x) stand-in.")
app.add_typer(config_app, name="config")
reports_app = typer.Typer(help="Drift reports.")
app.add_typer(soda_app, name="soda")
app.add_typer(reports_app, name="reports")
blocks_app = typer.Typer(help="The Prefect blocks crimeflow keeps on the server.")
app.add_typer(blocks_app, name="blocks")
app.add_typer(token_app, name="token")


@app.callback()
def load_settings(ctx: typer.Context) -> None:
    """Read the settings before any command: a bad value is one line and exit code 2."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from crimeflow.contract.setting_errors import describe

    # Help and shell completion work whatever the environment holds (click has moved the
    # subcommand's arguments out of ctx by now, hence argv).
    if ctx.resilient_parsing or "--help" in sys.argv[1:]:
        return
    try:
        # Loaded here, before a command imports flows or starts uvicorn (`crimeflow api`), so
        # every command fails the same way, before it has done anything.
        get_settings()
    except (ValidationError, SettingsError) as error:
        typer.echo(f"crimeflow: {describe(error)}", err=True)
        raise typer.Exit(2) from None


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings as JSON, secrets masked."""
    typer.echo(json.dumps(get_settings().masked(), indent=2, default=str))


@config_app.command("docs")
def config_docs() -> None:
    """Print the settings as a markdown table (docs/operations.md's settings table)."""
    typer.echo(Settings.markdown_table())


def _reporting() -> AbstractContextManager[str | None]:
    """Flow runs of this command go to the configured Prefect server when it answers."""
    from crimeflow.cli.prefect_server import flow_runs_reporting

    # On stderr: `crimeflow monitor --json` keeps stdout to the JSON.
    return flow_runs_reporting(get_settings(), lambda line: typer.echo(line, err=True))


@app.command()
def etl(
    month: Annotated[
        str | None, typer.Option(help="YYYY-MM; default last month (backfill on an empty lake).")
    ] = None,
) -> None:
    """Run the monthly ETL flow once, in this process."""
    from flows.etl import monthly_etl

    with _reporting():
        summary = monthly_etl(month=month)
    for m in summary["months"]:
        typer.echo(
            f"{m['month']}: pulled {m['pulled']:,}, clean {m['clean']:,}, "
            f"quarantined {m['quarantined']:,}, changed={m['changed']}"
        )
    typer.echo(f"training window: {', '.join(summary['window'])}")


@app.command()
def train(
    until: Annotated[str | None, typer.Option(help="Newest month of the window, YYYY-MM.")] = None,
    holdout_months: Annotated[int, typer.Option(help="Newest months held out.")] = 1,
    promote_if_none: Annotated[
        bool, typer.Option(help="Make this the champion when there is none yet.")
    ] = False,
    classifier: Annotated[
        str,
        typer.Option(help="auto, logistic_regression, random_forest or hist_gradient_boosting."),
    ] = "auto",
    balance: Annotated[
        bool, typer.Option(help="SMOTE + undersampling for every candidate (no balanced search).")
    ] = False,
) -> None:
    """Train a challenger on the lake's window, register it in MLflow, print holdout metrics."""
    from crimeflow.stores.registry import RegistryUnavailableError, check_registry_reachable

    try:
        # Before Prefect starts and minutes of training: an unreachable registry fails in
        # seconds, in one line.
        check_registry_reachable(get_settings())
    except RegistryUnavailableError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    from flows.train import train as train_flow

    with _reporting():
        result = train_flow(
            until=until,
            holdout_months=holdout_months,
            promote_if_none=promote_if_none,
            classifier=classifier,
            balance=balance,
        )
    model, baseline = result["holdout"], result["baseline"]
    # The model without the crime types whose records are made by an arrest (the honest one).
    honest = result.get("holdout_excluding_arrest_defined") or {}
    typer.echo(f"registered version {result['version']} ({result['classifier']})")
    typer.echo(f"{'metric':<16}{'model':>10}{'excl. arrest-defined':>22}{'baseline':>10}")
    for name in ("roc_auc", "pr_auc", "mcc", "f1", "precision", "recall", "brier", "log_loss"):
        typer.echo(
            f"{name:<16}{_num(model[name]):>10}{_num(honest.get(name)):>22}"
            f"{_num(baseline[name]):>10}"
        )
    typer.echo(
        f"mean predicted {model['mean_predicted']:.4f} vs observed {model['positive_rate']:.4f}"
    )
    if result["promoted"]:
        typer.echo("promoted to champion (there was none)")
    typer.echo(f"MLflow run: {result['run_url']}")
    typer.echo(f"MLflow model version: {result['version_url']}")
    if result.get("card_url"):
        typer.echo(f"Model card: {result['card_url']}")


def _num(value: float | None) -> str:
    """A metric for the console table."""
    return "-" if value is None else f"{value:.4f}"


@app.command()
def monitor(
    window_days: Annotated[int | None, typer.Option(help="Days of traffic to check.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Window start, ISO 8601 (UTC if naive).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Window end, ISO 8601 (default now).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the typed result as JSON.")
    ] = False,
) -> None:
    """Run the drift monitor once: logged traffic vs the champion's reference."""
    from flows.monitor import drift_monitor

    if window_days is not None and since is not None:
        raise typer.BadParameter("give --window-days or --since/--until, not both")
    days = window_days or get_settings().drift.window_days
    with _reporting():
        result = drift_monitor(window_days=days, since=since, until=until)
    if as_json:
        typer.echo(json.dumps(result, default=str, indent=2))
        return
    verdict = {True: "DRIFT DETECTED", False: "no drift", None: "insufficient data"}
    typer.echo(
        f"{verdict[result['drift_detected']]}: drift share {result['drift_share']}, "
        f"{result['current_rows']:,} rows; drifted: {', '.join(result['drifted_columns']) or '-'}"
    )
    typer.echo(f"report {result['report_id']}: {result['report_url']}")


@app.command()
def analysis(
    month: Annotated[
        str | None, typer.Option(help="YYYY-MM; default the newest month in the lake.")
    ] = None,
) -> None:
    """Write the analyst's monthly report (rates, tests, trend, plots) once, in this process."""
    from flows.analysis import monthly_analysis

    try:
        with _reporting():
            result = monthly_analysis(month=month)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{result['month']} (window {result['window'][0]}..{result['window'][-1]}): "
        f"{result['incidents']:,} incidents, arrest rate {result['arrest_rate']:.1%}"
    )
    if not result["map"]:
        typer.echo("no community-area boundaries in the lake: the report has no map")
    typer.echo(f"report: {result['report']}")
    typer.echo(f"served at: {result['url']}")


@app.command()
def generate(
    first: Annotated[str, typer.Option("--from", help="First month, YYYY-MM.")],
    last: Annotated[str, typer.Option("--to", help="Last month, YYYY-MM.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    rows_per_month: Annotated[int, typer.Option(help="Incidents per month.")] = 5000,
    drift: Annotated[
        str | None, typer.Option(help="Drift spec, e.g. 'type_mix=NARCOTICS:4;arrest_rate=1.3'.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv.gz or parquet.")] = "csv.gz",
) -> None:
    """Write seeded, Chicago-shaped incidents (SODA field names) for offline runs."""
    from crimeflow.standins.generate import Drift, generate_incidents, write_incidents

    try:
        spec = Drift.parse(drift) if drift else None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--drift") from error
    frame = generate_incidents(first, last, rows_per_month=rows_per_month, seed=seed, drift=spec)
    path = write_incidents(frame, out, fmt=fmt)
    typer.echo(f"wrote {len(frame):,} incidents to {path}")


@reports_app.command("ui")
def reports_ui() -> None:
    """Open the drift history in Evidently's UI (the workspace under CRIMEFLOW_HOME)."""
    import subprocess

    settings = get_settings()
    evidently = Path(sys.executable).with_name("evidently")
    command = [
        str(evidently),
        "ui",
        "--workspace",
        str(settings.evidently.workspace),
        "--port",
        str(settings.evidently.ui_port),
    ]
    typer.echo(" ".join(command))
    raise typer.Exit(subprocess.call(command))


@soda_app.command("serve")
def soda_serve(
    crimes: Annotated[
        Path, typer.Option(help="Crimes file: CSV(.gz) in either style, or Parquet.")
    ],
    stations: Annotated[
        Path | None, typer.Option(help="Stations file (default: the packaged copy).")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    boundaries: Annotated[
        Path | None,
        typer.Option(
            help="Folder with police_districts.geojson and community_areas.geojson "
            "(default: generated layers covering the generator's coordinates)."
        ),
    ] = None,
) -> None:
    """Serve a crimes file as a local SODA endpoint (set CRIMEFLOW_SOCRATA_URL to it)."""
    from crimeflow.standins.soda import serve_forever

    serve_forever(crimes, stations, host=host, port=port, boundaries_dir=boundaries)


@app.command()
def demo(
    data: Annotated[
        list[Path] | None,
        typer.Option(help="Crimes files to serve instead of generated data (repeatable)."),
    ] = None,
    keep_running: Annotated[
        bool, typer.Option(help="Keep the services up after the loop, until Ctrl-C.")
    ] = False,
) -> None:
    """Run the whole loop on this machine: ETL, champion, traffic, drift, retrain, promotion."""
    import signal

    from crimeflow.cli.demo import run_demo

    def interrupt(signum: int, frame: object) -> None:
        # SIGTERM as Ctrl-C: leaving the demo's blocks stops every process it started.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    summary = run_demo(get_settings(), data=data or None, keep_running=keep_running)
    raise typer.Exit(0 if summary.loop_completed else 1)


predictions_app = typer.Typer(help="The prediction log (every served prediction).")
app.add_typer(predictions_app, name="predictions")


@predictions_app.command("export")
def predictions_export(
    out: Annotated[Path, typer.Option(help="Parquet file to write.")],
    since: Annotated[
        str | None, typer.Option(help="First served_at included, ISO 8601 (no offset = UTC).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="served_at strictly before this, ISO 8601 (no offset = UTC).")
    ] = None,
) -> None:
    """Export logged predictions (inputs, model, probability, label, feedback) to Parquet."""
    from crimeflow.stores.prediction_log import export_predictions, parse_utc

    bounds = []
    for name, text in (("--since", since), ("--until", until)):
        try:
            bounds.append(parse_utc(text) if text else None)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint=name) from error
    rows = export_predictions(get_settings(), bounds[0], bounds[1], out)
    typer.echo(f"wrote {rows:,} predictions to {out}")


@app.command()
def api(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default CRIMEFLOW_API_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default CRIMEFLOW_API_PORT).")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="uvicorn worker processes (CRIMEFLOW_API_WORKERS).")
    ] = None,
) -> None:
    """Serve the prediction API (Litestar under uvicorn) until interrupted."""
    from api.app import serve

    settings = get_settings()
    serve(
        host or settings.api.host,
        settings.api.port if port is None else port,
        settings.api.workers if workers is None else workers,
    )


@app.command()
def exporter(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default CRIMEFLOW_EXPORTER_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default CRIMEFLOW_EXPORTER_PORT).")
    ] = None,
) -> None:
    """Serve Prometheus metrics of the loop (ETL, drift, gate, champion, retrains) on /metrics."""
    import logging
    import signal
    import threading

    from monitoring.exporter import serve

    settings = get_settings()
    stop = threading.Event()

    def finish(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    bind = host or settings.exporter.host
    chosen = settings.exporter.port if port is None else port
    typer.echo(f"loop exporter: http://{bind}:{chosen}/metrics")
    serve(settings, bind, chosen, stop)


@app.command()
def doctor() -> None:
    """Check every configured service (one line each, the setting to change); exit 1 on a FAIL."""
    from crimeflow.cli.doctor import diagnose

    raise typer.Exit(0 if diagnose(get_settings(), typer.echo) else 1)


@app.command()
def up(
    worker: Annotated[
        bool,
        typer.Option(
            "--worker",
            help="Deploy prefect.yaml onto the crimeflow-process pool and run a Prefect worker "
            "instead of the serve process (the production form).",
        ),
    ] = False,
) -> None:
    """Run the stack in the foreground: Prefect server, MLflow, serve process or worker, API."""
    from crimeflow.cli.stack import run_until_stopped

    raise typer.Exit(run_until_stopped(get_settings(), echo=typer.echo, worker=worker))


@blocks_app.command("apply")
def blocks_apply() -> None:
    """Create or update the lake's S3Bucket and AwsCredentials blocks from the S3 settings."""
    import httpx
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from crimeflow.stores.lake_blocks import LakeBlockError, apply_lake_blocks

    settings = get_settings()
    api_url = settings.prefect.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            written = apply_lake_blocks(settings.s3.bucket_block, settings.lake_url, settings.s3)
    except LakeBlockError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except httpx.HTTPError as error:
        typer.echo(f"error: cannot write blocks to the Prefect API at {api_url}: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"S3Bucket block {written.bucket_block!r} -> {written.url} "
        f"(keys in AwsCredentials block {written.credentials_block!r}) on {api_url}"
    )


@app.command()
def retrain(
    reason: Annotated[str, typer.Option(help="Why (recorded on the model version).")] = "manual",
    until: Annotated[
        str | None, typer.Option(help="Newest month to ingest and train on (default last month).")
    ] = None,
    refresh: Annotated[bool, typer.Option(help="Ingest months the lake lacks first.")] = True,
) -> None:
    """Run the retraining flow once: refresh, train a challenger, staging gate, promote/reject."""
    from flows.retrain import retrain as retrain_flow

    with _reporting():
        result = retrain_flow(reason=reason, until=until, refresh=refresh)
    gate = result["gate"]
    for who in ("candidate", "champion"):
        metrics = gate[f"{who}_metrics"] or {}
        typer.echo(
            f"{who:<10} v{gate[f'{who}_version'] or '-'}: ROC-AUC {_num(metrics.get('roc_auc'))} "
            f"PR-AUC {_num(metrics.get('pr_auc'))} "
            f"calibration gap {_num(metrics.get('calibration_gap'))}"
        )
    typer.echo(f"staging set: {gate['staging']}")
    verdict = "promoted to champion" if result["promoted"] else "rejected"
    typer.echo(f"v{result['trained_version']} {verdict}")
    for reason_text in gate["reasons"]:
        typer.echo(f"  - {reason_text}")


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="Why (recorded on both versions).")] = "manual",
) -> None:
    """Move the champion back to the previous champion (the API follows by itself)."""
    from flows.retrain import rollback as rollback_flow

    try:
        with _reporting():
            result = rollback_flow(reason=reason)
    except LookupError as error:
        raise typer.BadParameter(str(error)) from error
    typer.echo(f"champion is v{result['champion']} again (v{result['rolled_back']} rolled back)")
