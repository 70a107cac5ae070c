"""``heurimentor demo`` (``make demo``): the main job on real text, every part real; see ``run.py``."""

from heurimentor.demo.run import DemoConfig, DemoResult, run_demo

__all__ = ["DemoConfig", "DemoResult", "run_demo"]
