"""Sampling-based MPC planners for learned dynamics models, batched over candidates (numpy, robot-side).

GrBAL / ReBAL (Nagabandi et al., ICLR 2019) act with a model-predictive controller over their
adapted dynamics model: random shooting (the reference code's default, 500 candidates x horizon
10), the cross-entropy method, and MPPI (Williams et al., "Information Theoretic MPC", 2017;
what the paper ran in simulation).

Every planner solves E independent problems at once (E robots or simulated episodes, each with
its own adapted model; E = 1 on a robot) and evaluates all candidate sequences in one batch per
horizon step: ``rollout()`` starts one batch of candidate rollouts from the current (adapted) model
and returns its step ``dynamics(obs [E, N, d], act [E, N, a]) -> next_obs [E, N, d]`` (torch on the
workstation, ONNX on the robot; a recurrent model carries each candidate's state inside that step),
and ``cost(obs, act, next_obs) -> [E, N]`` is the task's negated reward, injected by the caller.
CEM and MPPI warm-start from their previous plan shifted
by one step; ``reset()`` forgets it (at the start of an episode).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Dynamics = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Batched model step: observations [E, N, obs_dim] and actions [E, N, act_dim] -> next observations [E, N, obs_dim]."""
Rollout = Callable[[], Dynamics]
"""Starts one batch of candidate rollouts; its step is called once per horizon step, in order."""
Cost = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""Batched per-step cost of (obs, act, next_obs) [E, N, ...] -> [E, N]; lower is better (minus the task reward)."""


def sequence_costs(obs: np.ndarray, actions: np.ndarray, rollout: Rollout, cost: Cost) -> np.ndarray:
    """Total cost [E, N] of candidates ``actions`` [E, N, H, act_dim] from observations ``obs`` [E, obs_dim];
    a candidate whose predicted rollout is not finite (a diverged model) costs +inf: it never steers the plan.
    A rollout with a ``sequence(obs, actions) -> next observations [E, N, H, d]`` method (a simulator) is given the
    whole sequences at once; a model is stepped one horizon step at a time."""
    e, n, horizon, _ = actions.shape
    dynamics = rollout()
    state = np.broadcast_to(np.asarray(obs)[:, None, :], (e, n, obs.shape[-1]))
    predicted = dynamics.sequence(obs, actions) if hasattr(dynamics, "sequence") else None
    total = np.zeros((e, n))
    for t in range(horizon):
        nxt = predicted[:, :, t] if predicted is not None else dynamics(state, actions[:, :, t])
        total += cost(state, actions[:, :, t], nxt)
        state = nxt
    return np.where(np.isfinite(total), total, np.inf)


class _Planner:
    """Shared bounds and shapes: actions live in [low, high] [act_dim]."""

    def __init__(self, low: np.ndarray, high: np.ndarray, samples: int, horizon: int):
        self.low, self.high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        if self.low.shape != self.high.shape or np.any(self.low >= self.high):
            raise ValueError("action bounds must have one shape and low < high in every dimension")
        if samples < 1 or horizon < 1:
            raise ValueError(f"samples and horizon must be >= 1, got {samples} and {horizon}")
        self.samples, self.horizon, self.act_dim = samples, horizon, self.low.size

    def reset(self) -> None:
        """Forget the previous plan (start of an episode)."""

    def plan(self, obs: np.ndarray, rollout: Rollout, cost: Cost, rng: np.random.Generator) -> np.ndarray:
        """The first actions [E, act_dim] of the best plans found from observations ``obs`` [E, obs_dim]."""
        raise NotImplementedError

    def _keep(self, kept: np.ndarray | None, e: int) -> np.ndarray:
        """The warm-start plan [E, H, act_dim]: the kept one, or the middle of the action range."""
        if kept is not None and kept.shape[0] == e:
            return kept
        return np.broadcast_to((self.high + self.low) / 2, (e, self.horizon, self.act_dim)).copy()


class RandomShooting(_Planner):
    """Uniform random sequences; the first action of the cheapest one. No memory between calls."""

    def plan(self, obs: np.ndarray, rollout: Rollout, cost: Cost, rng: np.random.Generator) -> np.ndarray:
        e = obs.shape[0]
        actions = rng.uniform(self.low, self.high, size=(e, self.samples, self.horizon, self.act_dim))
        best = np.argmin(sequence_costs(obs, actions, rollout, cost), axis=1)
        return actions[np.arange(e), best, 0].copy()


class CEM(_Planner):
    """Cross-entropy method: refit a diagonal Gaussian to the ``elites`` *lowest-cost* sequences, ``iterations``
    times (the reference code's CEM kept the wrong end of the sort); warm-started from the shifted last mean."""

    def __init__(
        self, low: np.ndarray, high: np.ndarray, samples: int, horizon: int, iterations: int = 4, elites: int = 50
    ):
        super().__init__(low, high, samples, horizon)
        if not 1 <= elites <= samples or iterations < 1:
            raise ValueError(f"need 1 <= elites <= samples and iterations >= 1, got {elites}, {iterations}")
        self.iterations, self.elites = iterations, elites
        self._mean: np.ndarray | None = None

    def reset(self) -> None:
        self._mean = None

    def plan(self, obs: np.ndarray, rollout: Rollout, cost: Cost, rng: np.random.Generator) -> np.ndarray:
        e = obs.shape[0]
        mean = self._keep(self._mean, e)
        std = np.broadcast_to((self.high - self.low) / 2, (e, self.horizon, self.act_dim)).copy()
        rows = np.arange(e)[:, None]
        for _ in range(self.iterations):
            eps = rng.standard_normal((e, self.samples, self.horizon, self.act_dim))
            actions = np.clip(mean[:, None] + std[:, None] * eps, self.low, self.high)
            costs = sequence_costs(obs, actions, rollout, cost)
            elite = actions[rows, np.argsort(costs, axis=1, kind="stable")[:, : self.elites]]
            mean, std = elite.mean(axis=1), elite.std(axis=1) + 1e-6
        self._mean = np.concatenate([mean[:, 1:], mean[:, -1:]], axis=1)  # warm start: shift by one control step
        return mean[:, 0].copy()


class MPPI(_Planner):
    """Model-predictive path integral control: perturb the nominal plan with Gaussian noise (``noise_std``,
    relative to the half range), weight each sample by exp(-cost / temperature) and average the
    perturbations into the plan; the plan is kept, shifted by one step, for the next call."""

    def __init__(
        self,
        low: np.ndarray,
        high: np.ndarray,
        samples: int,
        horizon: int,
        temperature: float = 1.0,
        noise_std: float = 0.5,
        iterations: int = 1,
    ):
        super().__init__(low, high, samples, horizon)
        if temperature <= 0 or noise_std <= 0 or iterations < 1:
            raise ValueError("temperature and noise_std must be > 0 and iterations >= 1")
        self.temperature, self.noise_std, self.iterations = temperature, noise_std, iterations
        self._plan: np.ndarray | None = None

    def reset(self) -> None:
        self._plan = None

    def plan(self, obs: np.ndarray, rollout: Rollout, cost: Cost, rng: np.random.Generator) -> np.ndarray:
        e = obs.shape[0]
        plan, scale = self._keep(self._plan, e), self.noise_std * (self.high - self.low) / 2
        for _ in range(self.iterations):
            eps = scale * rng.standard_normal((e, self.samples, self.horizon, self.act_dim))
            eps[:, 0] = 0.0  # one sample is the warm-start plan itself, so a good plan is never lost
            actions = np.clip(plan[:, None] + eps, self.low, self.high)
            costs = sequence_costs(obs, actions, rollout, cost)
            best = costs.min(axis=1, keepdims=True)
            lost = ~np.isfinite(best[:, 0])  # no finite candidate: keep the warm-start plan (sample 0)
            costs[lost, 0], best[lost] = 0.0, 0.0
            weights = np.exp(-(costs - best) / self.temperature)
            weights /= weights.sum(axis=1, keepdims=True)
            plan = np.einsum("en,enha->eha", weights, actions)  # the clipped samples' weighted mean
        self._plan = np.concatenate([plan[:, 1:], plan[:, -1:]], axis=1)
        return plan[:, 0].copy()


PLANNERS: dict[str, type[_Planner]] = {"random_shooting": RandomShooting, "cem": CEM, "mppi": MPPI}


def make_planner(config: dict, low: np.ndarray, high: np.ndarray) -> _Planner:
    """A planner from ``{"name": ..., "samples": ..., "horizon": ..., its own fields}`` (a bundle's metadata)."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in PLANNERS:
        raise ValueError(f"planner name {name!r} is unknown; use one of {sorted(PLANNERS)}")
    try:
        return PLANNERS[name](low, high, **config)
    except TypeError as e:
        raise ValueError(f"planner {name!r}: bad settings {config} ({e})") from None
