"""``heurimentor dmu …`` and ``heurimentor mixture …``."""

import typer

app = typer.Typer(no_args_is_help=True)
mixture_app = typer.Typer(no_args_is_help=True)
