"""``heurimentor dashboards push``: the platform's Grafana dashboards into a Grafana, through its HTTP API.

For a Grafana that no kube-prometheus-stack sidecar feeds (the chart's ConfigMaps labelled
grafana_dashboard are the in-cluster way). Each dashboard is written by its uid with overwrite, so a
second push updates it in place (Grafana bumps its version) instead of adding a copy.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

logger = logging.getLogger(__name__)
app = typer.Typer(no_args_is_help=True)

# The chart's copies are the source of truth (also shipped as ConfigMaps by the chart).
DASHBOARDS_DIR = Path(__file__).resolve().parents[1] / "charts" / "heurimentor" / "dashboards"


@dataclass(frozen=True)
class Pushed:
    uid: str
    title: str
    version: int
    url: str


def load_dashboards(directory: Path) -> list[dict[str, Any]]:
    """Every *.json dashboard of ``directory``; each must carry a uid (the key it is updated by)."""
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise ValueError(f"no *.json dashboards in {directory}")
    dashboards = []
    for path in paths:
        try:
            dashboard = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a readable JSON dashboard: {e}") from e
        if not isinstance(dashboard, dict) or not dashboard.get("uid"):
            raise ValueError(f"{path}: a dashboard needs a top-level 'uid' to be updated in place")
        dashboards.append(dashboard)
    return dashboards


def push_dashboards(
    *, url: str, token: str, dashboards: list[dict[str, Any]], folder_uid: str | None = None, timeout_s: float = 10.0
) -> list[Pushed]:
    """Create or update each dashboard (by uid) in the Grafana at ``url`` with a service-account token."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaException

    api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
    pushed = []
    for dashboard in dashboards:
        # id null: Grafana matches on uid, so the same file always lands on the same dashboard.
        body: dict[str, Any] = {"dashboard": {**dashboard, "id": None}, "overwrite": True, "message": "heurimentor dashboards push"}
        if folder_uid:
            body["folderUid"] = folder_uid
        try:
            answer = api.dashboard.update_dashboard(body)
        except GrafanaException as e:
            raise RuntimeError(f"Grafana at {url} refused dashboard {dashboard['uid']!r} ({dashboard.get('title')}): {e}") from e
        pushed.append(Pushed(uid=answer["uid"], title=dashboard.get("title", ""), version=answer["version"], url=answer.get("url", "")))
        logger.info("pushed dashboard %s version %s", answer["uid"], answer["version"])
    return pushed


@app.command()
def push(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. https://grafana.example.internal")],
    token: Annotated[str, typer.Option(envvar="GRAFANA_TOKEN", help="a Grafana service-account token (Editor); or $GRAFANA_TOKEN")],
    directory: Annotated[Path, typer.Option("--dir", help="folder of dashboard JSON files", file_okay=False)] = DASHBOARDS_DIR,
    folder_uid: Annotated[Optional[str], typer.Option(help="Grafana folder uid to put them in (default: General)")] = None,
) -> None:
    """Upload the dashboards to Grafana, updating those already there (matched by uid)."""
    try:
        pushed = push_dashboards(url=url, token=token, dashboards=load_dashboards(directory), folder_uid=folder_uid)
    except (ValueError, RuntimeError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    for p in pushed:
        typer.echo(f"{p.uid}\tversion {p.version}\t{p.title}\t{p.url}")
