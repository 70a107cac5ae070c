"""``heurimentor model|tokenizer|train|quantize …``."""

from typing import Annotated, Optional

import typer


def train(
    config: Annotated[Optional[str], typer.Option("--config", help="trainer YAML config (default /etc/heurimentor/train.yaml)")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="override a field: section.field=value (repeatable)")] = None,
    nproc_per_node: Annotated[int, typer.Option(help="worker processes; >1 runs them under torchrun --standalone")] = 1,
) -> None:
    """Train on this machine (the operator and `torchx run` launch the same trainer elastically)."""
    import subprocess
    import sys

    args = (["--config", config] if config else []) + [a for item in overrides or [] for a in ("--set", item)]
    if nproc_per_node <= 1:
        from trainer.train import main

        main(args)
        return
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc_per_node}", "-m", "trainer.train", *args]
    raise typer.Exit(subprocess.call(command))


def register(root: typer.Typer) -> None:
    """Add the trainer's command groups to the root command."""
    root.command("train")(train)
