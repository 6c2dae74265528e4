"""How wrong a dynamics model is over the planner's horizon: open-loop prediction error, step by step.

The planner scores candidates by rolling the model forward H decisions from the current state, feeding it its own
predictions; so the error that matters is open-loop, per horizon step. From many start points of recorded episodes
(the oracle's, by default: states a good controller visits), the model adapts as the controller would (GrBAL: one
step on the M transitions before the start; ReBAL: its state rebuilt over them), then predicts H steps of the actions
that were really taken. Errors are squared, in units of each observation's spread, averaged over signals.
"""

from __future__ import annotations

import numpy as np

from metactl.controllers.dynamics import DynamicsSpec, DynamicsStats
from metactl.train.torch_online import Adaptation, TorchOnlineModel


def open_loop_error(
    spec: DynamicsSpec,
    params: list[np.ndarray],
    stats: DynamicsStats,
    mode: str,
    episodes: list[tuple[np.ndarray, np.ndarray]],
    *,
    window: int,
    lr: float,
    horizon: int,
    starts_per_episode: int = 20,
    velocity_index: int | None = None,
    adaptation: Adaptation | None = None,
    adapt: bool = True,
) -> dict[str, list[float]]:
    """Mean normalized squared error after 1..``horizon`` open-loop steps, over ``starts_per_episode`` evenly spread
    start points of each episode (obs [n + 1, d], act [n, a] at the model's step). ``velocity_index``: also the error
    of that one signal (the forward velocity, which the planner's cost reads). ``adapt`` False: the model's weights
    (and a recurrent model's zero state) as trained, the window seen but not adapted on."""
    all_obs, all_act = [], []
    for obs, act in episodes:
        last = len(act) - horizon
        if last <= window:
            continue
        for s in np.linspace(window, last, starts_per_episode).astype(int):
            all_obs.append(obs[s - window : s + horizon + 1])
            all_act.append(act[s - window : s + horizon])
    if not all_obs:
        raise ValueError(f"no episode is longer than window + horizon = {window + horizon} decisions")
    obs, act = np.stack(all_obs), np.stack(all_act)  # [S, M + H + 1, d], [S, M + H, a]
    model = TorchOnlineModel(mode, spec, params, stats, len(obs), window, lr, adaptation)
    model.reset()
    for j in range(window):  # what the controller has seen when it plans from the start point
        model.observe(obs[:, j], act[:, j], obs[:, j + 1])
    if adapt:
        model.adapt()
    step = model.rollout()
    state = obs[:, window][:, None]
    scale = np.asarray(stats.obs_std)
    errors, velocity = [], []
    for h in range(horizon):
        state = step(state, act[:, window + h][:, None])
        diff = (state[:, 0] - obs[:, window + h + 1]) / scale
        errors.append(float(np.mean(diff**2)))
        if velocity_index is not None:
            velocity.append(float(np.mean(diff[:, velocity_index] ** 2)))
    out = {"all_signals": errors}
    if velocity_index is not None:
        out["velocity"] = velocity
    return out
