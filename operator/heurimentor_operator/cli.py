"""``heurimentor operator …``: run the operator, render what it would create, print the CRD."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True)

# Package data: links to the chart's crds/ in the source tree, the files themselves in a built wheel.
CRD_PATH = Path(__file__).parent / "crds" / "aquila2trainingjobs.heurimentor.io.yaml"


@app.command()
def run(
    namespace: Annotated[
        Optional[list[str]], typer.Option("--namespace", "-n", help="watch this namespace (repeatable); default: all")
    ] = None,
    standalone: Annotated[Optional[bool], typer.Option("--standalone", help="no peering (only with a single replica)")] = None,
    peering: Annotated[Optional[str], typer.Option(help="peering object name shared by the operator's replicas")] = None,
    priority: Annotated[
        Optional[int],
        typer.Option(help="peering priority: the highest-priority replica works, others wait; default: derived from the pod name"),
    ] = None,
    pod_name: Annotated[
        Optional[str], typer.Option(help="this replica's pod name: its peering identity (the chart passes it from the Downward API)")
    ] = None,
    metrics_port: Annotated[Optional[int], typer.Option(help="Prometheus /metrics port (0 disables)")] = None,
    health_port: Annotated[Optional[int], typer.Option(help="liveness /healthz port (0 disables)")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML settings file")] = None,
) -> None:
    """Run the Aquila2TrainingJob operator until interrupted."""
    import kopf

    from heurimentor import logs
    from heurimentor_operator import handlers
    from heurimentor_operator.config import load_settings, peering_priority

    try:
        cfg = load_settings(
            config,
            namespaces=namespace or None,
            standalone=standalone,
            peering_name=peering,
            priority=priority,
            pod_name=pod_name,
            metrics_port=metrics_port,
            health_port=health_port,
        )
        if cfg.standalone and peering is not None:
            raise ValueError("--standalone and --peering exclude each other: standalone means no peering object")
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    logs.configure_logging(cfg.log_level, json_format=cfg.log_json)
    handlers.SETTINGS = cfg
    # Standalone: no peering name at all. kopf makes peering mandatory as soon as it is given one,
    # and a standalone operator watches no peering object, so it would wait for good.
    if cfg.standalone:
        peering_args: dict = {"standalone": True}
    else:
        peering_args = {"peering_name": cfg.peering_name, "priority": peering_priority(cfg), "identity": cfg.pod_name}
        logging.getLogger(__name__).info(
            "peering as %s with priority %d",
            cfg.pod_name or "(host/process)",
            peering_args["priority"],
            extra={"peering": cfg.peering_name},
        )
    kopf.run(
        clusterwide=not cfg.namespaces,
        namespaces=cfg.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{cfg.health_port}/healthz" if cfg.health_port else None,
        **peering_args,
    )


@app.command()
def render(manifest: Annotated[Path, typer.Argument(help="an Aquila2TrainingJob YAML file", exists=True, dir_okay=False)]) -> None:
    """Print the ConfigMap, Service and worker pods the operator would create for MANIFEST."""
    import yaml

    from heurimentor_operator.builders import assign_pools, build_config_map, build_pod, build_service
    from heurimentor_operator.constants import KIND
    from heurimentor_operator.spec import SpecError, parse_job

    # A manifest may carry what the job needs next to it (deploy/tiny-demo.yaml: its checkpoint claim).
    jobs = [d for d in yaml.safe_load_all(manifest.read_text()) if isinstance(d, dict) and d.get("kind") == KIND]
    if len(jobs) != 1:
        typer.echo(f"error: {manifest}: expected one {KIND} document, found {len(jobs)}", err=True)
        raise typer.Exit(2)
    [body] = jobs
    body.setdefault("metadata", {}).setdefault("namespace", "default")
    body["metadata"].setdefault("uid", "00000000-render")
    try:
        spec = parse_job(body)
    except SpecError as e:
        typer.echo(f"error: {manifest}: {e}", err=True)
        raise typer.Exit(2) from e
    assigned = assign_pools(spec, spec.elastic.target)
    docs = [build_config_map(spec), build_service(spec)]
    for pool in spec.pools:
        docs += [build_pod(spec, pool, i, attempt=0) for i in range(assigned[pool.name])]
    typer.echo(yaml.safe_dump_all(docs, sort_keys=False))


@app.command()
def crd() -> None:
    """Print the Aquila2TrainingJob CRD (apply it with kubectl before running the operator)."""
    typer.echo(CRD_PATH.read_text())
