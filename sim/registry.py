"""Task families by name, and their Gymnasium registration under the ``metactl/`` namespace."""

from __future__ import annotations

import functools

from metactl.sim.adaptive_locomotion import AntCrippledLeg, HalfCheetahDisabledJoint, HalfCheetahPier, HalfCheetahSlope
from metactl.sim.locomotion import (
    AntForwardBackward,
    HalfCheetahForwardBackward,
    HalfCheetahGoalVelocity,
    HalfCheetahRun,
)
from metactl.sim.point_nav import FourCorners, MultiGoalCircle
from metactl.sim.tasks import TaskError, TaskFamily

FAMILIES: dict[str, type[TaskFamily]] = {
    cls.name: cls
    for cls in (
        FourCorners,
        MultiGoalCircle,
        HalfCheetahForwardBackward,
        HalfCheetahGoalVelocity,
        AntForwardBackward,
        HalfCheetahDisabledJoint,
        HalfCheetahSlope,
        HalfCheetahPier,
        AntCrippledLeg,
    )
}
"""The meta-learning task families (each with a train/test split)."""
BENCHMARK_FAMILIES: dict[str, type[TaskFamily]] = {HalfCheetahRun.name: HalfCheetahRun}
"""Single-task families for plain-ES benchmarks; not registered as Gymnasium envs."""


@functools.cache
def make_family(name: str) -> TaskFamily:
    """The task family called ``name``; an unknown name raises ``TaskError`` listing the known ones."""
    cls = FAMILIES.get(name) or BENCHMARK_FAMILIES.get(name)
    if cls is None:
        raise TaskError(f"unknown task family {name!r}; choose one of: {', '.join(FAMILIES)}")
    return cls()


def register_envs() -> None:
    """Register every family as a Gymnasium env (idempotent; ``metactl.gymnasium_envs`` holds the ids)."""
    from metactl import gymnasium_envs

    gymnasium_envs.register()
