"""The oracle: the planner's model replaced by the true simulator, the reference a learned model is measured by.

Every candidate action sequence is stepped in a copy of the simulator's exact state (MuJoCo's full physics
state and its solver warm start) with ``mujoco.rollout``, under the episode's current model and actuator damage,
so the oracle plans with exactly the dynamics the robot then meets (up to the task changing later: it does not
see the future). Same planner, same settings, same cost as the learned models: what separates them is the model.
"""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np
from mujoco import rollout as mj_rollout

FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS
CTRL = mujoco.mjtState.mjSTATE_CTRL


class OracleDynamics:
    """``controllers.mpc.OnlineDynamics`` backed by the simulated episodes themselves (``attach``ed to their batch):
    nothing to learn or adapt; ``hold`` control steps per predicted transition."""

    def __init__(self, hold: int = 1):
        self.hold = hold
        self.batch = None
        self._datas: dict[tuple[int, str], mujoco.MjData] = {}

    def attach(self, batch: object) -> None:
        """The lockstep batch of MuJoCo episodes to plan for (``train.mb_rollout.run_episodes`` calls this)."""
        if not hasattr(batch, "data"):
            raise ValueError("the oracle plans with MuJoCo episodes; this family has no MuJoCo state to copy")
        self.batch = batch

    def reset(self) -> None:
        """Nothing to forget: the oracle always knows the dynamics."""

    def observe(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> None:
        """Nothing to learn."""

    def adapt(self) -> None:
        """Nothing to adapt."""

    def rollout(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        return _Rollout(self)

    def predict_sequences(self, actions: np.ndarray) -> np.ndarray:
        """Observations [E, N, H, d] after each of the H decisions of candidates ``actions`` [E, N, H, a] (clipped to
        the actuator range, as the robot clips them), from each episode's current true state."""
        batch = self.batch
        if batch is None:
            raise RuntimeError("attach the oracle to the simulated episodes first")
        fam = batch.family
        e, n, horizon, _ = actions.shape
        sub = self.hold * fam.frame_skip  # physics steps per decision
        actions = np.clip(actions, fam.action_low, fam.action_high)
        out = np.empty((e, n, horizon, batch.obs_dim))
        for i, model in enumerate(batch.models):
            data = batch.data(i, self._scratch(model, "state"))
            state = np.empty(mujoco.mj_stateSize(model, FULL))
            mujoco.mj_getState(model, data, state, FULL)
            ctrl = actions[i] if batch.gain is None else actions[i] * batch.gain[i]
            controls = np.repeat(ctrl, sub, axis=1)  # [N, H * sub, nu]
            states, _ = mj_rollout.rollout(
                model, self._scratch(model, "rollout"), state[None], controls, control_spec=CTRL,
                initial_warmstart=data.qacc_warmstart[None].copy(),
            )  # fmt: skip
            out[i] = self._observations(model, states[:, sub - 1 :: sub])
        return out

    def _scratch(self, model: mujoco.MjModel, use: str) -> mujoco.MjData:
        """An ``MjData`` of ``model`` for ``use``: "state" (an episode's state, copied) or "rollout" (candidates)."""
        key = (id(model), use)
        if key not in self._datas:
            self._datas[key] = mujoco.MjData(model)
        return self._datas[key]

    def _observations(self, model: mujoco.MjModel, states: np.ndarray) -> np.ndarray:
        """The family's observations of full physics states [..., nstate]: qpos[skip:nq], then qvel[:nv] (time comes
        first in a state, then qpos and qvel)."""
        batch = self.batch
        nq, nv, skip = batch._nq, batch._nv, batch._skip
        qpos, qvel = states[..., 1 : 1 + model.nq], states[..., 1 + model.nq : 1 + model.nq + model.nv]
        return np.concatenate([qpos[..., skip:nq], qvel[..., :nv]], axis=-1)


class _Rollout:
    """One batch of candidate rollouts: the whole sequences are stepped at once (``sequence``)."""

    def __init__(self, oracle: OracleDynamics):
        self.oracle = oracle

    def sequence(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return self.oracle.predict_sequences(actions)

    def __call__(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        raise TypeError("the oracle steps whole candidate sequences (planners call sequence())")
