"""Simulated task families for meta-learning (MuJoCo and 2-D navigation).

Depends on no other metactl package. Without a display, offscreen rendering defaults to EGL
(``MUJOCO_GL=egl``). Importing it registers the Gymnasium envs
``metactl/FourCorners-v0``, ``metactl/MultiGoalCircle-v0``,
``metactl/HalfCheetahForwardBackward-v0``, ``metactl/HalfCheetahGoalVelocity-v0`` and
``metactl/AntForwardBackward-v0``, and GrBAL's ``metactl/HalfCheetahDisabledJoint-v0``,
``metactl/HalfCheetahSlope-v0``, ``metactl/HalfCheetahPier-v0`` and ``metactl/AntCrippledLeg-v0``.
"""

import os

if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"  # no display: offscreen rendering (read when MuJoCo's GL loads)

from metactl.sim.registry import FAMILIES, make_family, register_envs
from metactl.sim.rollout import BatchPolicy, RolloutResult, rollout
from metactl.sim.tasks import (
    BatchSim,
    ChangeTask,
    CrippledLegTask,
    DirectionTask,
    DisabledJointTask,
    GoalTask,
    PierTask,
    Task,
    TaskError,
    TaskFamily,
    TerrainTask,
    VelocityTask,
    task_from_dict,
)

register_envs()

__all__ = [
    "FAMILIES",
    "BatchPolicy",
    "BatchSim",
    "ChangeTask",
    "CrippledLegTask",
    "DirectionTask",
    "DisabledJointTask",
    "GoalTask",
    "PierTask",
    "RolloutResult",
    "Task",
    "TaskError",
    "TaskFamily",
    "TerrainTask",
    "VelocityTask",
    "make_family",
    "register_envs",
    "rollout",
    "task_from_dict",
]
