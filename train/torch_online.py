"""Online-adapting dynamics models in torch, batched over E episodes (the ``OnlineDynamics`` of ``controllers.mpc``).

Used for data collection and evaluation in simulation; on the robot the same roles are played
by ONNX graphs (``deploy.model_bundle``). Modes (Nagabandi et al., ICLR 2019, Sec. 6):

- ``grbal``: every step, theta'_e = theta - lr * grad L(theta; episode e's last M transitions).
- ``mb``: the trained weights, never changed.
- ``mb_de`` (dynamic evaluation): every step one more gradient step on the episode's own running
  weights, on its last M transitions; the weights return to the trained ones at ``reset``.
- ``rebal``: every step the LSTM state is rebuilt from zero over the episode's last M transitions (as
  trained: windows of M + K read from zero; a state run over a whole episode would leave that range);
  each candidate rollout then steps its own copy of the state through its predicted future.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import vmap

from metactl.controllers.dynamics import DynamicsSpec, DynamicsStats, TransitionWindow
from metactl.controllers.planners import Dynamics
from metactl.train import dynamics_model as dm

MODES = ("grbal", "mb", "mb_de", "rebal")


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


class TorchOnlineModel:
    """E episodes of one trained model in ``mode``; ``window`` = M, ``lr`` the adaptation step size."""

    def __init__(
        self,
        mode: str,
        spec: DynamicsSpec,
        params: list[np.ndarray],
        stats: DynamicsStats,
        envs: int,
        window: int = 16,
        lr: float = 0.01,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if (mode == "rebal") != (spec.kind == "recurrent"):
            raise ValueError(f"mode {mode!r} does not fit a {spec.kind} model")
        spec.check_params(params)
        self.mode, self.spec, self.envs, self.lr = mode, spec, envs, lr
        self.params = dm.from_numpy(params)
        self.stats = dm.TorchStats(stats)
        self.window = TransitionWindow(window, envs, spec.obs_dim, spec.act_dim)
        self._adapt_batch = vmap(dm.adapt_step, in_dims=(0, None, 0, 0, 0, None))
        self._adapt_shared = vmap(dm.adapt_step, in_dims=(None, None, 0, 0, 0, None))
        self.reset()

    def reset(self) -> None:
        self.window.clear()
        self.refused = 0  # adaptation steps refused because they were not finite
        self.current: list[torch.Tensor] | None = None  # per-episode weights [E, ...], None = the trained ones
        h = self.spec.rnn_hidden
        self.h, self.c = torch.zeros(self.envs, h), torch.zeros(self.envs, h)

    def observe(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> None:
        self.window.push(obs, act, next_obs)

    def adapt(self) -> None:
        if self.mode == "mb" or self.window.count == 0:
            return
        obs, act, nxt = (_t(a) for a in self.window.arrays())
        if self.mode == "rebal":
            with torch.no_grad():
                self.h, self.c = dm.lstm_state(self.params, self.stats, obs, act)
            return
        if self.mode == "grbal" or self.current is None:  # GrBAL restarts from the meta-weights every step
            after = self._adapt_shared(self.params, self.stats, obs, act, nxt, self.lr)
        else:
            after = self._adapt_batch(self.current, self.stats, obs, act, nxt, self.lr)
        # A step that is not finite (e.g. dynamic evaluation diverging) is refused: that episode keeps its weights.
        ok = torch.stack([torch.isfinite(w).flatten(1).all(1) for w in after]).all(0)
        if not bool(ok.all()):
            self.refused += int((~ok).sum())
            fresh = self.mode == "grbal" or self.current is None  # GrBAL falls back to the meta-weights
            before = [p.expand(self.envs, *p.shape) for p in self.params] if fresh else self.current
            keep = [ok.view(-1, *[1] * (w.dim() - 1)) for w in after]
            after = [torch.where(k, w, b) for k, w, b in zip(keep, after, before, strict=True)]
        self.current = after

    def rollout(self) -> Dynamics:
        if self.mode != "rebal":
            return self.predict
        state: dict[str, torch.Tensor] = {}  # this rollout's per-candidate h, c [E, N, H]

        def step(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                o, a = _t(obs), _t(act)
                if not state:  # every candidate starts from its episode's state
                    state["h"], state["c"] = (s[:, None].expand(-1, o.shape[1], -1) for s in (self.h, self.c))
                h, c = state["h"], state["c"]
                out, state["h"], state["c"] = dm.predict_recurrent(self.params, self.stats, o, a, h, c)
            return out.numpy().astype(np.float64)

        return step

    def predict(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        """One step of the adapted model: next observations [E, N, d] of obs [E, N, d], act [E, N, a]."""
        if self.mode == "rebal":
            return self.rollout()(obs, act)
        with torch.no_grad():
            o, a = _t(obs), _t(act)
            if self.current is None:
                out = dm.predict(self.params, self.stats, o, a)
            else:  # per-episode adapted weights: one batched matmul per layer
                out = self.stats.next_obs(o, dm.mlp_batched(self.current, self.stats.inputs(o, a)))
        return out.numpy().astype(np.float64)
