"""Model-predictive control with an online-adapted dynamics model: the GrBAL / ReBAL control step.

Nagabandi et al., ICLR 2019, Alg. 2: at every control step, (1) the newest real transition
reaches the model, (2) the model adapts to the last M transitions — GrBAL: one gradient step
from the meta-trained weights; ReBAL: its recurrent state is rebuilt over the last M;
MB+DE: one more gradient step on its running weights; MB: nothing — and (3) the planner picks
the action on the adapted model with the task's cost.

The controller is one implementation for every place it runs: E simulated episodes in lockstep
during training and evaluation (a torch model), one robot on the runtime (an ONNX model).
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from metactl.controllers.planners import Cost, Dynamics, _Planner


class OnlineDynamics(Protocol):
    """A dynamics model that adapts online, batched over E episodes run in lockstep."""

    def reset(self) -> None:
        """Start of an episode: back to the trained weights / a zero recurrent state."""

    def observe(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> None:
        """One real transition per episode: obs [E, d], act [E, a] (as applied), next_obs [E, d]."""

    def adapt(self) -> None:
        """Adapt to what was observed (called once per control step, before planning)."""

    def rollout(self) -> Dynamics:
        """A step function for one batch of candidate rollouts under the adapted model: obs [E, N, d], act [E, N, a]
        -> next observations [E, N, d], called once per horizon step (ReBAL carries each candidate's state)."""


class MPCController:
    """Adapt, then plan, at every decision; ``adapt=False`` freezes the model at its trained weights / zero state
    (the no-adaptation ablation).

    Batched over E episodes: ``act(obs [E, d]) -> [E, a]``, called once per control step. A decision is taken
    every ``hold`` control steps and its action held in between (a coarser planning step: the model predicts,
    and adapts on, transitions of ``hold`` control steps). A transition is only given to the model when both of
    its ends are known: ``fresh=False`` marks an observation that is a repeat of the previous one (the robot's
    answer was lost), and the transitions into and out of it are skipped.
    """

    def __init__(
        self,
        model: OnlineDynamics,
        planner: _Planner,
        cost: Cost,
        rng: np.random.Generator,
        adapt: bool = True,
        hold: int = 1,
    ):
        if hold < 1:
            raise ValueError(f"hold must be >= 1 control step, got {hold}")
        self.model, self.planner, self.cost, self.rng, self.adapt_enabled = model, planner, cost, rng, adapt
        self.hold = hold
        self._prev_obs: np.ndarray | None = None
        self._prev_act: np.ndarray | None = None
        self._t = 0
        self.adapt_s = 0.0  # time of the last decision's adaptation and planning [s]
        self.plan_s = 0.0

    def reset(self) -> None:
        self.model.reset()
        self.planner.reset()
        self._prev_obs = self._prev_act = None
        self._t = 0

    def act(self, obs: np.ndarray, fresh: bool = True) -> np.ndarray:
        t, self._t = self._t, self._t + 1
        if t % self.hold and self._prev_act is not None:  # between decisions: the held action
            return self._prev_act
        obs = np.asarray(obs, dtype=np.float64)
        t0 = time.perf_counter()
        if self.adapt_enabled:
            if self._prev_obs is not None and fresh:
                self.model.observe(self._prev_obs, self._prev_act, obs)
            self.model.adapt()
        t1 = time.perf_counter()
        action = self.planner.plan(obs, self.model.rollout, self.cost, self.rng)
        self.adapt_s, self.plan_s = t1 - t0, time.perf_counter() - t1
        self._prev_obs, self._prev_act = (obs, action) if fresh else (None, None)
        return action

    def applied(self, action: np.ndarray) -> None:
        """What was really applied (after the safety layer and the actuator limits) for the last decision."""
        if self._prev_act is not None and (self._t - 1) % self.hold == 0:
            self._prev_act = np.asarray(action, dtype=np.float64).reshape(self._prev_act.shape)
