"""Detectors: pure functions from series (numpy arrays) to findings. The monitor feeds them from the
database and stores what they find as events; the tests feed them crafted series."""

from tsm_service.detectors.base import Finding
from tsm_service.detectors.loss import detect_grad_norm_runaway, detect_loss_spikes, detect_plateau
from tsm_service.detectors.ranks import detect_stall, detect_stragglers
from tsm_service.detectors.weights import detect_weight_change

__all__ = [
    "Finding",
    "detect_grad_norm_runaway",
    "detect_loss_spikes",
    "detect_plateau",
    "detect_stall",
    "detect_stragglers",
    "detect_weight_change",
]
