"""``heurimentor model|tokenizer|train|quantize …``."""

import typer


def register(root: typer.Typer) -> None:
    """Add the trainer's command groups to the root command."""
