"""The ``heurimentor`` command: one entry point, each deployable adds its own subcommands."""

from __future__ import annotations

import typer

app = typer.Typer(help="HeuriMentor: train Aquila2 models with the ATE, TSM and DMU.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """HeuriMentor platform command line."""


def _register() -> None:
    # Each deployable owns a typer app in its cli.py; imports there stay light (heavy ones lazy).
    from dmu_service.cli import app as dmu_app, mixture_app
    from heurimentor_operator.cli import app as operator_app
    from trainer.cli import register as register_trainer
    from tsm_service.cli import app as tsm_app

    register_trainer(app)
    app.add_typer(dmu_app, name="dmu", help="Data management unit: sources, ingestion, dedup, shards.")
    app.add_typer(mixture_app, name="mixture", help="Read and change data mixtures.")
    app.add_typer(tsm_app, name="tsm", help="Training state monitor.")
    app.add_typer(operator_app, name="operator", help="The Aquila2TrainingJob Kubernetes operator.")


_register()
