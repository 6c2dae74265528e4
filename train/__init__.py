"""Meta-training in simulation: ES-MAML and its non-meta baseline (uses ``sim`` and ``controllers``)."""

from metactl.train.config import PRESETS, ConfigError, TrainConfig, config_for
from metactl.train.es_maml import TrainResult, heldout_returns, run_label, train

__all__ = [
    "PRESETS",
    "ConfigError",
    "TrainConfig",
    "TrainResult",
    "config_for",
    "heldout_returns",
    "run_label",
    "train",
]
