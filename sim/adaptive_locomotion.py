"""The task families of GrBAL / ReBAL: robots that must adapt online to damage and terrain.

Nagabandi, Clavera, Liu, Fearing, Abbeel, Levine, Finn, "Learning to Adapt in Dynamic, Real-World
Environments Through Meta-Reinforcement Learning", ICLR 2019, Sec. 6. A new perturbation is drawn
for every episode (one task per episode); train/test splits are fixed:

- ``halfcheetah_disabled_joint``: one actuator gives no torque. Train: joint 1-5; test: joint 0 (bthigh).
- ``halfcheetah_slope``: the ground is a height profile of ramps (a MuJoCo height field, flat before x = 2 m;
  after Nagabandi et al.'s ``hfield`` task). Train (``random_ramps``): 3-5 ramps end to end from x ~ U[2, 3] m,
  the first one up, a height span ~ U[0.2, 1.0] m, slopes at most 0.2 (11 deg, half the friction angle), so the
  features lie where a 1000-step (10 s) episode gets to. Test, all from x = 2 m: ``gentle`` (+0.5 m over 10 m),
  ``steep`` (+2.0 m over 10 m: twice the training span), ``hill`` (+0.6 then -0.6 m, 3 m each) and ``basin``
  (-0.6 then +0.6 m); with one or two ramps, never a training profile.
- ``halfcheetah_pier``: the cheetah runs over 10 floating blocks (2 m long, 5 kg, on vertical springs of
  2000 N/m, flush when unloaded; x from -2 to 18 m between fixed shores); block k's damping is ``damping[k]``
  [N s/m]. Train: each U[0, 10]; test: all 0.5 (``bouncy``), all 9.5 (``calm``), alternating 0.5 / 9.5
  (``alternating``). Only the cheetah is observed (17 signals, as ``halfcheetah_fb``) and randomized at reset.
- ``ant_crippled_leg``: one leg is crippled as in the reference code (iclavera/learning_to_adapt ``AntEnv``):
  its two actuators give no torque, and its thigh and foot capsules are halved in radius and length, the foot
  moved up to the thigh, so the leg no longer reaches the ground (masses and inertias stay those of the whole
  leg, as there). Legs are numbered as there (``LEG_ACTUATORS``, ``LEG_GEOMS``): leg 0 = hip_1 / ankle_1
  (front left), 1 = hip_2 / ankle_2 (front right), 2 = hip_3 / ankle_3 (back), 3 = hip_4 / ankle_4 (right back).
  Train: legs 0-2; test: leg 3.

The dynamic setting (``change_tests``): a task that changes mid-episode (``sim.tasks.ChangeTask``), the healthy
robot (joint / leg -1) becoming the held-out damaged one: HalfCheetah joint 0 fails at step 500 of 1000, the
Ant's leg 3 is crippled at step 250 of 500.

HalfCheetah families step at dt = 0.01 s (frame skip 1, as the paper) for 1000 steps with reward
``v_x - 0.05 |a|^2``; the Ant at 0.05 s for 500 steps with ``v_x - 0.005 |a|^2 + 0.05``. No episode ends
early (the reference code's ``done = False``, Ant included: a fallen Ant just stops earning, and every episode
is a full 500 steps of data). ``reward_spec`` states each reward for a model-based planner's cost.
The cheetah of the slope and pier scenes has exactly the bodies (masses, inertias) of Gymnasium's.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import mujoco
import numpy as np

from metactl.sim.locomotion import LocomotionFamily, _asset_xml, base_model, never
from metactl.sim.tasks import ChangeTask, CrippledLegTask, DisabledJointTask, PierTask, Task, TaskError, TerrainTask

CHEETAH_REWARD: dict[str, Any] = {
    "velocity_signal": "vel:rootx",
    "ctrl_cost": 0.05,
    "alive_bonus": 0.0,
    "height_signal": None,
    "height_range": None,
    "posture_signal": "pos:rooty",
    "posture_limit": 1.3,
}
"""``v_x - 0.05 |a|^2``, no termination (the HalfCheetah families). The planner's cost also bounds the torso's pitch
(``posture_signal``) at +-1.3 rad (``controllers.dynamics.ForwardCost``): unbounded, every planner flips the cheetah
onto its back; the bound was chosen on validation tasks (docs/grbal.md, "Upright")."""
ANT_REWARD: dict[str, Any] = {
    "velocity_signal": "vel:root.vx",
    "ctrl_cost": 0.005,
    "alive_bonus": 0.05,
    "height_signal": None,
    "height_range": None,
    "posture_signal": "tilt:root",
    "posture_limit": None,
}
"""``v_x - 0.005 |a|^2 + 0.05``, no termination (the reference code's Ant; ``ant_fb`` ends on a fall). The posture
signal is the torso's tilt from upright (``controllers.dynamics.ObservedSignal``): evaluations count the steps on its
back with it, and ``--posture-limit`` bounds it; no bound by default, as none raised the learned models' progress on
validation tasks (docs/grbal.md, "The Ant on its back")."""
LEG_ACTUATORS = ((2, 3), (4, 5), (6, 7), (0, 1))
"""Ant leg k -> its (hip, ankle) actuator indices in model order (the reference code's numbering)."""
LEG_GEOMS = (
    ("left_leg_geom", "left_ankle_geom"),
    ("right_leg_geom", "right_ankle_geom"),
    ("back_leg_geom", "third_ankle_geom"),
    ("rightback_leg_geom", "fourth_ankle_geom"),
)
"""Ant leg k -> its (thigh, foot) capsules, which a crippled leg has at half size."""

TERRAIN_X = (-20.0, 150.0)  # [m] extent of the ground (height field, pier shores) along x: beyond any 10 s run
TERRAIN_COLUMNS = 1361  # 0.125 m apart
TERRAIN_ELEVATION = 3.0  # [m] largest height span of a profile
MAX_SLOPE = 0.2  # steepest training ramp (11 deg; the friction angle is 22 deg)
PIER_BLOCKS, PIER_START, PIER_BLOCK_LENGTH = 10, -2.0, 2.0  # [m]
PIER_STIFFNESS, PIER_BLOCK_MASS = 2000.0, 5.0  # [N/m], [kg]
_PIER_CONTACT = 'contype="0" conaffinity="1" condim="3"'  # the cheetah touches blocks and shores; they, nothing else
CHEETAH_DOFS = (9, 9)  # the cheetah's own qpos / qvel sizes (rootx ... ffoot)
_FLOOR = re.compile(r'<geom[^>]*name="floor"[^>]*/>')


def cheetah_scene(ground: str, bodies: str = "", assets: str = "") -> mujoco.MjModel:
    """Gymnasium's HalfCheetah with its floor replaced by the MJCF ``ground`` (world geoms), ``bodies`` appended
    after the cheetah (so its joints stay first) and ``assets`` added; the cheetah's masses and inertias are those
    of ``base_model`` (the asset's ``settotalmass``), not of the bare XML."""
    xml, _ = _asset_xml("half_cheetah.xml")
    xml = _FLOOR.sub(ground, xml).replace("</worldbody>", bodies + "</worldbody>")
    model = mujoco.MjModel.from_xml_string(xml.replace("</asset>", assets + "</asset>"))
    cheetah = base_model("half_cheetah.xml")
    n = cheetah.nbody
    assert [model.body(i).name for i in range(n)] == [cheetah.body(i).name for i in range(n)]
    model.body_mass[:n] = cheetah.body_mass
    model.body_inertia[:n] = cheetah.body_inertia
    mujoco.mj_setConst(model, mujoco.MjData(model))  # recompute mass-dependent constants
    return model


class _Adaptive(LocomotionFamily):
    """A GrBAL family: tasks share one read-only model per scene, keyed by the task field ``scene_field``
    (None: every task runs on the robot's own model)."""

    scene_field: ClassVar[str | None] = None

    def scene_model(self, key: Any) -> mujoco.MjModel:
        """The scene of ``scene_field`` value ``key``."""
        raise NotImplementedError

    def model_key(self, task: Task) -> object:
        return getattr(task, self.scene_field) if self.scene_field else None

    def model_for_key(self, key: object) -> mujoco.MjModel:
        return base_model(self.xml_name) if self.scene_field is None else self.scene_model(key)


class _Cheetah(_Adaptive):
    """HalfCheetah running forward at 100 Hz."""

    xml_name = "half_cheetah.xml"
    qpos_skip = 1
    frame_skip = 1
    horizon = 1000
    reward_spec: ClassVar[dict[str, Any]] = CHEETAH_REWARD

    def task_target(self, task: Task) -> float:
        return 1.0

    def reward(self, vx, actions, obs, target):  # type: ignore[no-untyped-def]
        return vx - self.ctrl_penalty(actions), never(vx)


def _disabled(n: int, indices: Sequence[int]) -> np.ndarray:
    gain = np.ones(n)
    gain[list(indices)] = 0.0
    return gain


class HalfCheetahDisabledJoint(_Cheetah):
    name = "halfcheetah_disabled_joint"
    env_id = "metactl/HalfCheetahDisabledJoint-v0"
    task_type = DisabledJointTask

    def actuator_gain(self, task: Task) -> np.ndarray:
        joint = task.joint  # type: ignore[attr-defined]
        if not isinstance(joint, int | np.integer) or not -1 <= joint < 6:
            raise TaskError(f"DisabledJointTask.joint must be an actuator index in 0..5 (-1: none), got {joint!r}")
        return _disabled(6, [joint] if joint >= 0 else [])

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return [DisabledJointTask(joint=int(j)) for j in rng.integers(1, 6, size=n)]

    def test_tasks(self) -> list[Task]:
        return [DisabledJointTask(joint=0)]

    def change_tests(self) -> list[ChangeTask]:
        """The dynamic setting: healthy for the first 500 of 1000 steps, then joint 0 (held out) disabled."""
        return [ChangeTask(DisabledJointTask(joint=-1), DisabledJointTask(joint=0), 500, name="joint 0 fails at 500")]


def _leg(leg: object) -> int:
    """``leg`` if it names an Ant leg or is -1 (none), else a TaskError."""
    if not isinstance(leg, int | np.integer) or not -1 <= leg < len(LEG_ACTUATORS):
        raise TaskError(f"CrippledLegTask.leg must be in 0..{len(LEG_ACTUATORS) - 1} (-1: none), got {leg!r}")
    return int(leg)


@functools.lru_cache(maxsize=8)
def crippled_ant_model(leg: int) -> mujoco.MjModel:
    """Gymnasium's Ant with leg ``leg``'s thigh and foot capsules at half radius and half length and the foot
    centred where the thigh is (in its own frame), as the reference code edits them after compiling: the
    masses and inertias stay those of the full leg (shared, read-only)."""
    if _leg(leg) < 0:
        return base_model("ant.xml")
    model = copy.deepcopy(base_model("ant.xml"))
    thigh, foot = (model.geom(name).id for name in LEG_GEOMS[_leg(leg)])
    model.geom_size[[thigh, foot], :2] /= 2  # capsule: (radius, half-length)
    model.geom_pos[foot] = model.geom_pos[thigh]
    return model


class AntCrippledLeg(_Adaptive):
    name = "ant_crippled_leg"
    env_id = "metactl/AntCrippledLeg-v0"
    xml_name = "ant.xml"
    qpos_skip = 2
    task_type = CrippledLegTask
    scene_field = "leg"
    scene_model = staticmethod(crippled_ant_model)
    horizon = 500
    ctrl_cost = 0.005
    reward_spec: ClassVar[dict[str, Any]] = ANT_REWARD

    def task_target(self, task: Task) -> float:
        return 1.0

    def reward(self, vx, actions, obs, target):  # type: ignore[no-untyped-def]
        return vx - self.ctrl_penalty(actions) + 0.05, never(vx)

    def actuator_gain(self, task: Task) -> np.ndarray:
        leg = _leg(task.leg)  # type: ignore[attr-defined]
        return _disabled(8, LEG_ACTUATORS[leg] if leg >= 0 else [])

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return [CrippledLegTask(leg=int(k)) for k in rng.integers(0, 3, size=n)]

    def test_tasks(self) -> list[Task]:
        return [CrippledLegTask(leg=3)]

    def change_tests(self) -> list[ChangeTask]:
        """The dynamic setting: healthy for the first 250 of 500 steps, then leg 3 (held out) crippled."""
        return [ChangeTask(CrippledLegTask(leg=-1), CrippledLegTask(leg=3), 250, name="leg 3 cripples at 250")]


def terrain_heights(ramps: Sequence[Sequence[float]], x: np.ndarray) -> np.ndarray:
    """Ground height [m] at ``x`` [m]: the sum of each ramp's rise, ramped linearly over its length."""
    h = np.zeros_like(x, dtype=np.float64)
    for start, length, rise in ramps:
        h += rise * np.clip((x - start) / length, 0.0, 1.0)
    return h


@functools.cache
def _terrain_base() -> mujoco.MjModel:
    half = (TERRAIN_X[1] - TERRAIN_X[0]) / 2
    # The elevation scale is fixed at compile time (bounding boxes depend on it); profiles only change the data.
    field = f'<hfield name="terrain" nrow="2" ncol="{TERRAIN_COLUMNS}" size="{half} 2 {TERRAIN_ELEVATION} 0.5"/>'
    ground = (
        f'<geom name="floor" type="hfield" hfield="terrain" pos="{TERRAIN_X[0] + half} 0 0" conaffinity="1" '
        f'condim="3" rgba="0.8 0.9 0.8 1"/>'
    )
    return cheetah_scene(ground, assets=field)


@functools.lru_cache(maxsize=64)
def terrain_model(ramps: tuple[tuple[float, float, float], ...]) -> mujoco.MjModel:
    """HalfCheetah on the height profile of ``ramps`` (shared, read-only)."""
    if any(length <= 0 for _, length, _ in ramps):
        raise TaskError(f"TerrainTask.ramps need positive lengths, got {ramps}")
    x = np.linspace(*TERRAIN_X, TERRAIN_COLUMNS)
    h = terrain_heights(ramps, x)
    low, span = float(h.min()), float(h.max() - h.min())
    if span > TERRAIN_ELEVATION + 1e-9:
        raise TaskError(f"TerrainTask.ramps span {span:.3f} m of height; at most {TERRAIN_ELEVATION} m")
    model = copy.deepcopy(_terrain_base())
    model.hfield_data[:] = np.tile((h - low) / TERRAIN_ELEVATION, 2)  # row-major: both rows (y) the same profile
    model.geom_pos[model.geom("floor").id, 2] = low
    return model


class HalfCheetahSlope(_Cheetah):
    name = "halfcheetah_slope"
    env_id = "metactl/HalfCheetahSlope-v0"
    task_type = TerrainTask
    scene_field = "ramps"
    scene_model = staticmethod(terrain_model)

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return [TerrainTask(ramps=random_ramps(rng), name="random") for _ in range(n)]

    def test_tasks(self) -> list[Task]:
        return [
            TerrainTask(ramps=((2.0, 10.0, 0.5),), name="gentle"),
            TerrainTask(ramps=((2.0, 10.0, 2.0),), name="steep"),
            TerrainTask(ramps=((2.0, 3.0, 0.6), (5.0, 3.0, -0.6)), name="hill"),
            TerrainTask(ramps=((2.0, 3.0, -0.6), (5.0, 3.0, 0.6)), name="basin"),
        ]


def random_ramps(rng: np.random.Generator) -> tuple[tuple[float, float, float], ...]:
    """A training profile: 3-5 ramps end to end from x ~ U[2, 3] m, relative rises +-U[0.2, 0.6] (the first one up)
    scaled to a height span ~ U[0.2, 1.0] m; each ramp U[2, 3] m long, longer if needed to keep slope <= MAX_SLOPE."""
    count = int(rng.integers(3, 6))
    rises = rng.uniform(0.2, 0.6, count) * np.where(rng.random(count) < 0.5, -1.0, 1.0)
    rises[0] = abs(rises[0])
    levels = np.concatenate([[0.0], np.cumsum(rises)])
    rises *= rng.uniform(0.2, 1.0) / (levels.max() - levels.min())
    ramps, x = [], round(float(rng.uniform(2.0, 3.0)), 3)
    for rise, length in zip(rises, rng.uniform(2.0, 3.0, count), strict=True):
        rise = round(float(rise), 3)
        length = max(round(float(length), 3), math.ceil(abs(rise) / MAX_SLOPE * 1000) / 1000)
        ramps.append((x, length, rise))
        x = round(x + length, 3)
    return tuple(ramps)


def _box(name: str, x0: float, x1: float, attrs: str) -> str:
    """A box spanning x in [x0, x1] [m], 2 m wide, 0.2 m thick, its top at z = 0 (in its body frame)."""
    return f'<geom name="{name}" type="box" pos="{(x0 + x1) / 2} 0 -0.1" size="{(x1 - x0) / 2} 1 0.1" {attrs}/>'


def _block(k: int) -> str:
    """Floating block ``k``: a box on a vertical slide joint with a spring; its damping is set per task."""
    rest = PIER_BLOCK_MASS * 9.81 / PIER_STIFFNESS  # spring offset: an unloaded block floats flush with the shores
    joint = (
        f'<joint name="block{k}" type="slide" axis="0 0 1" stiffness="{PIER_STIFFNESS}" springref="{rest}" '
        'damping="0" armature="0" limited="true" range="-0.3 0.2"/>'
    )
    box = _box(f"block{k}", 0.01, PIER_BLOCK_LENGTH - 0.01, f'mass="{PIER_BLOCK_MASS}" {_PIER_CONTACT}')
    return f'<body name="block{k}" pos="{PIER_START + k * PIER_BLOCK_LENGTH} 0 0">{joint}{box}</body>'


@functools.cache
def _pier_base() -> mujoco.MjModel:
    end = PIER_START + PIER_BLOCKS * PIER_BLOCK_LENGTH
    shores = _box("shore_back", TERRAIN_X[0], PIER_START - 0.01, _PIER_CONTACT)
    shores += _box("shore", end + 0.01, TERRAIN_X[1], _PIER_CONTACT)
    return cheetah_scene(shores, bodies="".join(_block(k) for k in range(PIER_BLOCKS)))


@functools.lru_cache(maxsize=64)
def pier_model(damping: tuple[float, ...]) -> mujoco.MjModel:
    """HalfCheetah on the pier with per-block damping [N s/m] (shared, read-only)."""
    if len(damping) != PIER_BLOCKS or min(damping) < 0:
        raise TaskError(f"PierTask.damping needs {PIER_BLOCKS} damping values >= 0, got {len(damping)}: {damping}")
    model = copy.deepcopy(_pier_base())
    model.dof_damping[CHEETAH_DOFS[1] :] = damping
    return model


class HalfCheetahPier(_Cheetah):
    name = "halfcheetah_pier"
    env_id = "metactl/HalfCheetahPier-v0"
    task_type = PierTask
    robot_dofs = CHEETAH_DOFS
    scene_field = "damping"
    scene_model = staticmethod(pier_model)

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        dampings = np.round(rng.uniform(0.0, 10.0, (n, PIER_BLOCKS)), 3)
        return [PierTask(damping=tuple(float(d) for d in row), name="random") for row in dampings]

    def test_tasks(self) -> list[Task]:
        return [
            PierTask(damping=(0.5,) * PIER_BLOCKS, name="bouncy"),
            PierTask(damping=(9.5,) * PIER_BLOCKS, name="calm"),
            PierTask(damping=(0.5, 9.5) * (PIER_BLOCKS // 2), name="alternating"),
        ]
