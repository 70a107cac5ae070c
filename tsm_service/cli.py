"""``heurimentor tsm …``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True)

ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="YAML settings file (HEURIMENTOR_TSM_CONFIG_FILE)")]
DatabaseOption = Annotated[Optional[str], typer.Option("--database-url", help="SQLAlchemy URL (HEURIMENTOR_TSM_DATABASE_URL)")]


@app.command()
def migrate(
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
) -> None:
    """Create or upgrade the TSM schema (run before `serve`)."""
    from heurimentor.logs import configure_logging
    from tsm_service.config import load_settings
    from tsm_service.migrations import upgrade

    settings = load_settings(config_file=config, database_url=database_url)
    configure_logging(settings.log_level, json_format=settings.log_json)
    upgrade(settings.database_url, revision)
    typer.echo(f"TSM schema at {revision} in {settings.database_url.split('@')[-1]}")


@app.command()
def serve(
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    host: Annotated[Optional[str], typer.Option(help="bind address")] = None,
    port: Annotated[Optional[int], typer.Option(help="port")] = None,
    dmu_url: Annotated[Optional[str], typer.Option(help="DMU base URL for mixture updates")] = None,
) -> None:
    """Serve the TSM API (ingest, curves, events, /metrics) and run the detectors."""
    import uvicorn

    from heurimentor.logs import configure_logging
    from heurimentor.service_kit.settings import InsecureSettings
    from tsm_service.api.main import create_app
    from tsm_service.config import load_settings

    settings = load_settings(config_file=config, database_url=database_url, host=host, port=port, dmu_url=dmu_url)
    configure_logging(settings.log_level, json_format=settings.log_json)
    try:
        app = create_app(settings)
    except InsecureSettings as e:
        typer.echo(f"settings: {e}", err=True)
        raise typer.Exit(2) from e
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)


UrlOption = Annotated[Optional[str], typer.Option("--url", help="TSM base URL (default: http://HOST:PORT from settings)")]


def _get(url: str | None, path: str, params: dict | None = None) -> list | dict:
    import httpx

    from tsm_service.config import load_settings

    settings = load_settings()
    url = url or f"http://{settings.host}:{settings.port}"
    try:
        # The service's own token (HEURIMENTOR_TSM_AUTH_TOKEN): reads need one in production.
        headers = {"Authorization": f"Bearer {settings.auth_token.get_secret_value()}"} if settings.auth_token else {}
        response = httpx.get(f"{url.rstrip('/')}{path}", params=params, headers=headers, timeout=30)
    except httpx.HTTPError as e:
        raise typer.BadParameter(f"cannot reach the TSM at {url}: {e}") from e
    if response.status_code != 200:
        typer.echo(f"TSM {path}: HTTP {response.status_code}: {response.json().get('detail', response.text)}", err=True)
        raise typer.Exit(1)
    return response.json()


@app.command()
def events(
    job: str, url: UrlOption = None, kind: Annotated[Optional[str], typer.Option(help="only this kind")] = None, limit: int = 50
) -> None:
    """Findings and actions of a job (newest last)."""
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "step", "kind", "severity", "subject", "message")
    params = {"limit": limit, **({"kind": kind} if kind else {})}
    for event in _get(url, f"/v1/jobs/{job}/events", params):
        table.add_row(str(event["id"]), str(event["step"]), event["kind"], event["severity"], event["subject"], event["message"])
    Console().print(table)


@app.command()
def rollbacks(
    job: str, url: UrlOption = None, status: Annotated[Optional[str], typer.Option(help="open | acknowledged | dismissed")] = "open"
) -> None:
    """Rollback recommendations of a job: checkpoint step to return to and data range to skip."""
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "status", "resume at or before step", "skip steps", "skip tokens", "reason")
    for r in _get(url, f"/v1/jobs/{job}/rollbacks", {"status": status} if status else None):
        tokens = f"{r['skip_from_tokens']}..{r['skip_to_tokens']}" if r["skip_to_tokens"] is not None else "-"
        table.add_row(
            str(r["id"]), r["status"], str(r["resume_before_step"]), f"{r['skip_from_step']}..{r['skip_to_step']}", tokens, r["reason"]
        )
    Console().print(table)
