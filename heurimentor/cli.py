"""The ``heurimentor`` command: one entry point, each deployable adds its own subcommands."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="HeuriMentor: train Aquila2 models with the ATE, TSM and DMU.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """HeuriMentor platform command line."""


@app.command()
def demo(
    workdir: Path = typer.Option(Path(".demo"), help="where the demo writes everything (wiped first)"),
    steps: int = typer.Option(240, min=40, help="training steps (the junk source comes at half, the person's change at three quarters)"),
    workers: int = typer.Option(2, min=1, help="torchrun worker processes"),
    policy: str = typer.Option("learning_progress", help="TSM mixture policy: static | odm | learning_progress"),
    corpus_scale: float = typer.Option(1.0, min=0.05, max=1.0, help="share of each source's documents to ingest"),
) -> None:
    """Run the main job on real EN/ZH text: DMU + TSM + elastic trainer, embedded defaults; pictures in WORKDIR."""
    from heurimentor.demo import DemoConfig, run_demo
    from heurimentor.demo.services import DemoError
    from heurimentor.logs import configure_logging

    configure_logging("WARNING", json_format=False)
    try:
        run_demo(DemoConfig(workdir=workdir.resolve(), steps=steps, workers=workers, policy=policy, corpus_scale=corpus_scale))
    except DemoError as e:
        raise SystemExit(f"demo: {e}") from e


@app.command()
def corpus(
    name: str = typer.Argument(help="man-en, man-zh, man-other, fortunes-en, fortunes-zh, edu-en, edu-zh, python-doc or python-index"),
    output: Path = typer.Argument(help='the JSONL file to write, one {"text": ...} a line: what `heurimentor dmu ingest` reads'),
    documents: int = typer.Option(0, min=0, help="at most this many documents (0: all)"),
    chars: int = typer.Option(2000, min=200, help="about this many characters a document"),
) -> None:
    """Write real text of this machine's Debian packages (man pages, fortunes, the Debian Edu manual, Python's docs) as JSONL."""
    import json
    from itertools import islice

    from heurimentor.corpora import CORPORA, documents as corpus_documents, missing_packages

    if name not in CORPORA:
        raise typer.BadParameter(f"unknown corpus {name!r} (known: {', '.join(CORPORA)})", param_hint="NAME")
    docs = corpus_documents(name, target_chars=chars)
    written = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as out:
        for doc in islice(docs, documents or None):
            out.write(json.dumps({"text": doc.text}, ensure_ascii=False) + "\n")
            written += 1
    if not written:
        output.unlink()
        missing = " ".join(missing_packages()) or "none"
        raise SystemExit(f"corpus: {name} has no documents here (missing Debian packages: {missing}; hack/install-system-deps.sh corpora)")
    typer.echo(f"{written} documents of {name} in {output}")


def _register() -> None:
    # Each deployable owns a typer app in its cli.py; imports there stay light (heavy ones lazy).
    from dmu_service.cli import app as dmu_app, mixture_app
    from heurimentor.dashboards import app as dashboards_app
    from heurimentor_operator.cli import app as operator_app
    from heurimentor_trainer.cli import register as register_trainer
    from tsm_service.cli import app as tsm_app

    register_trainer(app)
    app.add_typer(dmu_app, name="dmu", help="Data management unit: sources, ingestion, dedup, shards.")
    app.add_typer(mixture_app, name="mixture", help="Read and change data mixtures.")
    app.add_typer(tsm_app, name="tsm", help="Training state monitor.")
    app.add_typer(operator_app, name="operator", help="The Aquila2TrainingJob Kubernetes operator.")
    app.add_typer(dashboards_app, name="dashboards", help="Grafana dashboards: push them to a Grafana.")


_register()
