"""Controllers: numpy policies, the observation normalizer and adaptation operators.

Depends on no other metactl package and on nothing but numpy, so it runs on the robot.
"""

from metactl.controllers.adaptation import (
    AdaptationError,
    AdaptationOperator,
    AdaptState,
    ESGradient,
    HillClimb,
    make_operator,
    seed_slot_count,
)
from metactl.controllers.normalizer import NormalizerSnapshot, RunningNormalizer
from metactl.controllers.policies import Policy, PolicyError, PolicySpec
from metactl.controllers.serialization import load_policy, save_policy

__all__ = [
    "AdaptState",
    "AdaptationError",
    "AdaptationOperator",
    "ESGradient",
    "HillClimb",
    "NormalizerSnapshot",
    "Policy",
    "PolicyError",
    "PolicySpec",
    "RunningNormalizer",
    "load_policy",
    "make_operator",
    "save_policy",
    "seed_slot_count",
]
