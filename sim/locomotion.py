"""MuJoCo locomotion task families on the models Gymnasium ships.

Forward-Backward and Goal-Velocity are the MuJoCo benchmarks of MAML (Finn et
al., 2017) used by ES-MAML (Song et al., ICLR 2020, Sec. 5.2). The step is lean:
``mj_step(..., nstep=frame_skip)`` per instance, state gathered into preallocated
arrays, observations and rewards computed once for the whole batch.

Rewards (per control step, dt = 0.01 s x ``frame_skip`` 5 = 0.05 s):
- HalfCheetah Forward-Backward: ``direction * v_x - 0.05 * |a|^2``
- HalfCheetah Goal-Velocity:    ``-|v_x - v_goal| - 0.05 * |a|^2``
- Ant Forward-Backward:         ``direction * v_x - 0.005 * |a|^2 + 0.05``, ending
  the episode when the torso height leaves [0.2, 1.0] (Gymnasium's healthy range).

Train/test split (fixed): training tasks scale every body mass by
``mass_scale ~ U[0.8, 1.2]``; Forward-Backward draws direction +-1, Goal-Velocity
draws v_goal ~ U[0, 2] m/s. Test tasks are listed in each family's
``test_tasks`` (exact values, never drawn in training).

Families vary the scene per task through ``model_key`` / ``model_for_key``, the control
period through ``frame_skip`` and damage through ``actuator_gain`` (see
``sim.adaptive_locomotion``); the defaults cost the hot path nothing.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Callable, Sequence

import gymnasium
import mujoco
import mujoco.batch
import numpy as np

from metactl.sim.tasks import BatchSim, ChangeTask, DirectionTask, Task, TaskFamily, VelocityTask

ASSETS = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets")
FRAME_SKIP = 5
RESET_NOISE = 0.1


@functools.cache
def _asset_xml(xml_name: str) -> tuple[str, float | None]:
    """Asset text without ``settotalmass`` (deprecated in MuJoCo 4), and that total mass."""
    with open(os.path.join(ASSETS, xml_name)) as f:
        xml = f.read()
    match = re.search(r'settotalmass="([0-9.eE+-]+)"', xml)
    return (xml.replace(match.group(0), ""), float(match.group(1))) if match else (xml, None)


@functools.lru_cache(maxsize=64)
def compile_model(xml_name: str, mass_scale: float = 1.0) -> mujoco.MjModel:
    """Compile a Gymnasium asset with every body's mass and inertia scaled by ``mass_scale``.

    Cached: the returned model is shared and must be treated as read-only.
    """
    xml, total_mass = _asset_xml(xml_name)
    model = mujoco.MjModel.from_xml_string(xml)
    if total_mass is None:
        total_mass = float(model.body_mass.sum())
    if total_mass != float(model.body_mass.sum()) or mass_scale != 1.0:
        mujoco.mj_setTotalmass(model, total_mass * mass_scale)
        mujoco.mj_setConst(model, mujoco.MjData(model))  # recompute mass-dependent constants
    return model


def base_model(xml_name: str) -> mujoco.MjModel:
    """The unscaled model (shared, read-only)."""
    return compile_model(xml_name, 1.0)


def signal_names(model: mujoco.MjModel, qpos_skip: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Observation names (qpos[qpos_skip:], qvel) and actuator names, in model order."""
    pos, vel = [], []
    free_pos = ("x", "y", "z", "qw", "qx", "qy", "qz")
    free_vel = ("vx", "vy", "vz", "wx", "wy", "wz")
    for j in range(model.njnt):
        name = model.joint(j).name
        if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
            pos += [f"pos:{name}.{s}" for s in free_pos]
            vel += [f"vel:{name}.{s}" for s in free_vel]
        else:
            pos.append(f"pos:{name}")
            vel.append(f"vel:{name}")
    acts = tuple(model.actuator(i).name or model.joint(model.actuator_trnid[i, 0]).name for i in range(model.nu))
    return tuple(pos[qpos_skip:] + vel), acts


class MujocoBatch(BatchSim):
    """N simulations on one ``mujoco.batch.Batch``: each instance runs on its task's ``MjModel`` (tasks with the same
    ``family.model_key``, by default the mass scale, share one).

    The step is the hot path of every rollout. MuJoCo's batch steps every instance in one C call (bit-identical to
    ``mj_step`` on one ``MjData`` each) and keeps their states as rows of one array, so controls are written and
    observations read for the whole batch at once: the Python cost of a step does not grow with N.
    ``qpos`` / ``qvel`` [N, ...] are live views of those rows; ``data(i)`` is instance i as an ``MjData``.
    """

    def __init__(self, family: LocomotionFamily, tasks: Sequence[Task]):
        models: dict[object, mujoco.MjModel] = {}

        def model(task: Task) -> mujoco.MjModel:
            key = family.model_key(task)
            if key not in models:
                models[key] = family.model_for_key(key)
            return models[key]

        starts = [t.first if isinstance(t, ChangeTask) else t for t in tasks]
        self.models = [model(t) for t in starts]
        self.family = family
        m0 = self.models[0]
        self.num_envs, self.obs_dim, self.act_dim = len(tasks), family.obs_dim, m0.nu
        self._batch = mujoco.batch.Batch(m0, nsim=len(tasks), nthread=1)  # parallelism is across processes
        self._step_raw = self._batch._b.step  # (ids, nstep, stage) -> how many simulations failed
        self.state = self._batch.state
        """Every instance's integration state (qpos, qvel, warm start, controls, ...) [N, nstate], live."""
        self.qpos, self.qvel, self._ctrl = (self._batch.bind(f) for f in ("qpos", "qvel", "ctrl"))
        nq, nv = family.robot_dofs or (m0.nq, m0.nv)
        skip = family.qpos_skip
        self._pos, self._vel = self.qpos[:, skip:nq], self.qvel[:, :nv]
        self._obs_rows = _joined(self.state, self._pos, self._vel)  # the observation, if contiguous in the state
        self._ctrl0, self._obs0 = self._ctrl[0], None if self._obs_rows is None else self._obs_rows[0]
        self.x = self.qpos[:, 0]  # root x position [m], for the forward velocity (a live view)
        self.target = np.array([family.task_target(t) for t in starts], dtype=np.float64)
        gains = np.array([family.actuator_gain(t) for t in starts], dtype=np.float64).reshape(len(tasks), m0.nu)
        self.changes: dict[int, list[tuple[int, mujoco.MjModel, np.ndarray]]] = {}
        """Control step -> (instance, model, gain) that take over at it (``ChangeTask``s); undone at ``reset``."""
        for i, t in enumerate(tasks):
            if isinstance(t, ChangeTask):
                self.changes.setdefault(int(t.at_step), []).append((i, model(t.then), family.actuator_gain(t.then)))
        self._initial = (list(self.models), gains.copy())
        self.t = 0
        self.gain = None if np.all(gains == 1.0) and not self.changes else gains  # None: the plain (fast) path
        self.frame_skip = family.frame_skip
        self.inv_dt = 1.0 / (m0.opt.timestep * self.frame_skip)
        self._skip, self._nq, self._nv = skip, nq, nv
        self._bind()

    def _bind(self) -> None:
        """Run each instance on ``self.models`` (MuJoCo's batch keeps them alive and reads them)."""
        self._batch.set_models(self.models)

    def edit_models(self, edit: Callable[[mujoco.MjModel], None]) -> None:
        """Apply ``edit`` to private copies of this batch's models (the cached ones stay untouched), e.g. to
        perturb masses or friction; every instance then steps its edited model."""
        copies: dict[int, mujoco.MjModel] = {}
        for m in self.models:
            if id(m) not in copies:
                copies[id(m)] = copy.deepcopy(m)
                edit(copies[id(m)])
        self.models = [copies[id(m)] for m in self.models]
        self._bind()

    def data(self, i: int, out: mujoco.MjData | None = None) -> mujoco.MjData:
        """Instance ``i`` as an ``MjData`` of ``models[i]`` (written into ``out`` if given), with its kinematics
        computed (``mj_forward``): to render it, or to copy its state. A copy: writing to it changes nothing here."""
        data = self._batch.get_data(i, out)
        mujoco.mj_forward(self.models[i], data)
        return data

    def warnings(self) -> np.ndarray:
        """MuJoCo's warning counters [N, mjNWARNING] (bad qacc, contact overflow, ...: MuJoCo warns instead of
        raising) since the last reset."""
        return self._batch.warning[..., 1].copy()  # mjWarningStat: (lastinfo, number)

    def forward(self) -> None:
        """Recompute every instance after its ``qpos`` / ``qvel`` were written directly (e.g. to place a robot)."""
        self._batch.forward()

    def _observe(self) -> np.ndarray:
        if self._obs_rows is not None:
            return self._obs_rows.copy()
        return np.concatenate((self._pos, self._vel), axis=1)

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        if self.changes and self.t:  # back to the tasks' first halves
            self.models, self.gain = list(self._initial[0]), self._initial[1].copy()
            self._bind()
        self.t = 0
        nq, nv = self._nq, self._nv  # only the robot's state is randomized, not the scene's (e.g. floating blocks)
        self._batch.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        for i, m in enumerate(self.models):
            rng = np.random.default_rng(int(seeds[i]))
            self.qpos[i, :nq] = m.qpos0[:nq] + rng.uniform(-RESET_NOISE, RESET_NOISE, size=nq)
            self.qvel[i, :nv] = RESET_NOISE * rng.standard_normal(nv)
        self._batch.forward()
        return self._observe()

    def _change(self) -> None:
        """Switch the instances whose task changes at this step to their second task."""
        for i, model, gain in self.changes[self.t]:
            self.models[i] = model
            self.gain[i] = gain  # type: ignore[index]
        self._bind()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fam = self.family
        if self.changes and self.t in self.changes:
            self._change()
        self.t += 1
        actions = np.minimum(np.maximum(actions, fam.action_low), fam.action_high)
        self._ctrl[:] = actions if self.gain is None else actions * self.gain  # a disabled actuator applies nothing
        x_before = self.x.copy()
        self._batch.step(nstep=self.frame_skip)
        obs = self._observe()
        reward, terminated = fam.reward((self.x - x_before) * self.inv_dt, actions, obs, self.target)
        return obs, reward, terminated

    def step_one(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """``step`` for a batch of one (a Gymnasium env): the same physics and reward with scalar rewards, and
        ``action`` [act_dim] clipped straight into the controls."""
        fam = self.family
        if self.changes and self.t in self.changes:
            self._change()
        self.t += 1
        ctrl = self._ctrl0
        np.minimum(np.maximum(action, fam.action_low, out=ctrl), fam.action_high, out=ctrl)
        if self.gain is None:
            action = ctrl  # the controls are the clipped action; stepping does not change them
        else:
            action = ctrl.copy()
            ctrl *= self.gain[0]
        x_before = self.x.item(0)
        if self._step_raw(None, self.frame_skip, 0):  # MuJoCo's batch call itself: its Python wrapper costs 1.3 us
            raise mujoco.batch.SimulationError(np.zeros(1, dtype=int), self._batch.error(0), 1)
        obs = self._obs0.copy() if self._obs0 is not None else np.concatenate((self._pos[0], self._vel[0]))
        vx = (self.x.item(0) - x_before) * self.inv_dt
        reward, terminated = fam.reward_one(vx, action, obs, self.target.item(0))
        return obs, reward, terminated


def _joined(state: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """``[a | b]`` as one view of ``state``'s rows when ``b`` starts where ``a`` ends (qpos[skip:] then all of qvel);
    else None. Copying a view costs half as much as joining two."""
    start = (a.__array_interface__["data"][0] - state.__array_interface__["data"][0]) // state.itemsize
    end = (b.__array_interface__["data"][0] - state.__array_interface__["data"][0]) // state.itemsize + b.shape[1]
    if end - start != a.shape[1] + b.shape[1]:
        return None
    return state[:, start:end]


def never(vx: np.ndarray | float) -> np.ndarray | bool:
    """No termination, shaped like ``vx``: a batch [N], or one instance (False)."""
    return np.zeros(vx.shape, dtype=bool) if isinstance(vx, np.ndarray) else False


class LocomotionFamily(TaskFamily):
    """Shared machinery; subclasses set the model, the task type and the reward."""

    xml_name: str
    qpos_skip: int
    task_type: type[Task]
    horizon = 200
    ctrl_cost: float = 0.05
    frame_skip: int = FRAME_SKIP
    """Physics steps per control step."""
    robot_dofs: tuple[int, int] | None = None
    """(nq, nv) of the robot when the scene has more joints (e.g. floating blocks): only those are observed."""

    def __init__(self) -> None:
        model = self.model_for_key(self.model_key(self.test_tasks()[0]))
        names, self.action_names = signal_names(model, self.qpos_skip)
        if self.robot_dofs is not None:
            nq, nv = self.robot_dofs
            pos, vel = names[: model.nq - self.qpos_skip], names[model.nq - self.qpos_skip :]
            names = pos[: nq - self.qpos_skip] + vel[:nv]
        self.observation_names = names
        self.action_low = model.actuator_ctrlrange[:, 0].copy()
        self.action_high = model.actuator_ctrlrange[:, 1].copy()
        self.control_period = float(model.opt.timestep * self.frame_skip)

    def model_for(self, mass_scale: float) -> mujoco.MjModel:
        return compile_model(self.xml_name, float(mass_scale))

    def model_key(self, task: Task) -> object:
        """Tasks with equal keys share one (read-only) ``MjModel``."""
        return float(task.mass_scale)  # type: ignore[attr-defined]

    def model_for_key(self, key: object) -> mujoco.MjModel:
        """The shared, read-only model of ``model_key`` value ``key``."""
        return self.model_for(key)  # type: ignore[arg-type]

    def actuator_gain(self, task: Task) -> np.ndarray:
        """Per-actuator gain [act_dim] applied to the clipped command (0: a disabled actuator); the reward's
        control cost still uses the commanded action."""
        return np.ones(self.act_dim)

    def make_batch(self, tasks: Sequence[Task]) -> MujocoBatch:
        for t in tasks:
            for part in (t.first, t.then) if isinstance(t, ChangeTask) else (t,):
                self.check_task(part, self.task_type)
        return MujocoBatch(self, tasks)

    def task_target(self, task: Task) -> float:
        raise NotImplementedError

    def reward(
        self, vx: np.ndarray, actions: np.ndarray, obs: np.ndarray, target: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-instance reward [N] and termination [N] from forward velocity ``vx`` [N] (m/s),
        clipped ``actions`` [N, act_dim], observations [N, obs_dim] and task targets [N]; written for one
        instance too (scalars and 1-D arrays: ``reward_one``)."""
        raise NotImplementedError

    def ctrl_penalty(self, actions: np.ndarray) -> np.ndarray:
        """``ctrl_cost |a|^2`` of actions [N, act_dim] -> [N], or of one action [act_dim] -> a scalar."""
        squared = actions.dot(actions) if actions.ndim == 1 else np.einsum("ij,ij->i", actions, actions)
        return self.ctrl_cost * squared

    def reward_one(self, vx: float, action: np.ndarray, obs: np.ndarray, target: float) -> tuple[float, bool]:
        """``reward`` of one instance (the Gymnasium env's step): the same ``reward``, given scalars and 1-D arrays
        (every family's reward is written for either)."""
        reward, terminated = self.reward(vx, action, obs, target)
        return float(reward), bool(terminated)


class _ForwardBackward(LocomotionFamily):
    task_type = DirectionTask

    def task_target(self, task: Task) -> float:
        return float(task.direction)  # type: ignore[attr-defined]

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        """Directions are stratified (as many forward as backward, in random order) to cut variance."""
        directions = np.resize([1.0, -1.0], n)
        if n % 2:
            directions[-1] = rng.choice([-1.0, 1.0])
        directions = rng.permutation(directions)
        return [DirectionTask(direction=float(d), mass_scale=float(rng.uniform(0.8, 1.2))) for d in directions]

    def test_tasks(self) -> list[Task]:
        return [
            DirectionTask(direction=1.0),
            DirectionTask(direction=-1.0),
            DirectionTask(direction=1.0, mass_scale=0.9),
            DirectionTask(direction=-1.0, mass_scale=1.1),
        ]


class HalfCheetahForwardBackward(_ForwardBackward):
    name = "halfcheetah_fb"
    env_id = "metactl/HalfCheetahForwardBackward-v0"
    xml_name = "half_cheetah.xml"
    qpos_skip = 1

    def reward(self, vx, actions, obs, target):  # type: ignore[no-untyped-def]
        return target * vx - self.ctrl_penalty(actions), never(vx)


class AntForwardBackward(_ForwardBackward):
    name = "ant_fb"
    env_id = "metactl/AntForwardBackward-v0"
    xml_name = "ant.xml"
    qpos_skip = 2
    ctrl_cost = 0.005

    def reward(self, vx, actions, obs, target):  # type: ignore[no-untyped-def]
        z = obs[..., 0]  # torso height: the first observation ("pos:root.z")
        return target * vx - self.ctrl_penalty(actions) + 0.05, (z < 0.2) | (z > 1.0)


class HalfCheetahGoalVelocity(LocomotionFamily):
    name = "halfcheetah_vel"
    env_id = "metactl/HalfCheetahGoalVelocity-v0"
    xml_name = "half_cheetah.xml"
    qpos_skip = 1
    task_type = VelocityTask

    def task_target(self, task: Task) -> float:
        return float(task.velocity)  # type: ignore[attr-defined]

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return [
            VelocityTask(velocity=float(rng.uniform(0.0, 2.0)), mass_scale=float(rng.uniform(0.8, 1.2)))
            for _ in range(n)
        ]

    def test_tasks(self) -> list[Task]:
        return [VelocityTask(velocity=v) for v in (0.25, 0.75, 1.25, 1.75)]

    def reward(self, vx, actions, obs, target):  # type: ignore[no-untyped-def]
        return -np.abs(vx - target) - self.ctrl_penalty(actions), never(vx)


class HalfCheetahRun(LocomotionFamily):
    """Plain HalfCheetah running forward, with Gymnasium HalfCheetah-v5's reward ``v_x - 0.1 |a|^2``
    and 1000-step episodes: one task, for plain-ES benchmarks against published numbers (ARS).
    Not a meta-learning family: it has no train/test split."""

    name = "halfcheetah_run"
    env_id = "metactl/HalfCheetahRun-v0"
    xml_name = "half_cheetah.xml"
    qpos_skip = 1
    task_type = DirectionTask
    horizon = 1000
    ctrl_cost = 0.1

    def task_target(self, task: Task) -> float:
        return 1.0

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return [DirectionTask(direction=1.0)] * n

    def test_tasks(self) -> list[Task]:
        return [DirectionTask(direction=1.0)]

    def reward(self, vx, actions, obs, target):  # type: ignore[no-untyped-def]
        return vx - self.ctrl_penalty(actions), never(vx)
