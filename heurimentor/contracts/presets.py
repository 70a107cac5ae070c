"""Model preset names: the trainer's table (``heurimentor_trainer.presets.PRESETS``) defines them,
the operator refuses a job naming another, and the CRD's ``spec.model.preset`` enum lists them
(tests/foundation/test_contracts.py checks all three against this tuple)."""

from __future__ import annotations

PRESET_NAMES = ("aquila2-7b", "aquila2-34b", "aquila2-70b", "debug", "tiny")
