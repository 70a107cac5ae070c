"""GPU tests in this folder are opt-in: they run only when selected with ``-m gpu`` (on a lent GPU machine)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    if "gpu" in (config.option.markexpr or ""):
        return
    mine = [item for item in items if item.get_closest_marker("gpu") and HERE in Path(str(item.fspath)).parents]
    if mine:
        config.hook.pytest_deselected(items=mine)
        items[:] = [item for item in items if item not in mine]
