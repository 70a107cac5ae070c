"""``heurimentor tsm …``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True)

ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="YAML settings file (HEURIMENTOR_TSM_CONFIG_FILE)")]
DatabaseOption = Annotated[Optional[str], typer.Option("--database-url", help="SQLAlchemy URL (HEURIMENTOR_TSM_DATABASE_URL)")]


@app.command()
def migrate(config: ConfigOption = None, database_url: DatabaseOption = None,
            revision: Annotated[str, typer.Option(help="target revision")] = "head") -> None:
    """Create or upgrade the TSM schema (run before `serve`)."""
    from heurimentor.logs import configure_logging
    from tsm_service.config import load_settings
    from tsm_service.migrations import upgrade

    settings = load_settings(config_file=config, database_url=database_url)
    configure_logging(settings.log_level, json_format=settings.log_json)
    upgrade(settings.database_url, revision)
    typer.echo(f"TSM schema at {revision} in {settings.database_url.split('@')[-1]}")


@app.command()
def serve(config: ConfigOption = None, database_url: DatabaseOption = None,
          host: Annotated[Optional[str], typer.Option(help="bind address")] = None,
          port: Annotated[Optional[int], typer.Option(help="port")] = None,
          dmu_url: Annotated[Optional[str], typer.Option(help="DMU base URL for mixture updates")] = None) -> None:
    """Serve the TSM API (ingest, curves, events, /metrics) and run the detectors."""
    import uvicorn

    from heurimentor.logs import configure_logging
    from tsm_service.api.main import create_app
    from tsm_service.config import load_settings

    settings = load_settings(config_file=config, database_url=database_url, host=host, port=port, dmu_url=dmu_url)
    configure_logging(settings.log_level, json_format=settings.log_json)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)
