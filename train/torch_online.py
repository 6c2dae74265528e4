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

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.func import vmap

from metactl.controllers.dynamics import DynamicsSpec, DynamicsStats, TransitionWindow
from metactl.controllers.planners import Dynamics
from metactl.train import dynamics_model as dm
from metactl.train.inner_steps import SGD, InnerStep, adapt, make_inner_step
from metactl.train.meta_settings import MetaSettings

MODES = ("grbal", "mb", "mb_de", "rebal")


@dataclasses.dataclass(frozen=True, repr=False)
class Adaptation:
    """How a model adapts on one window: ``steps`` of ``inner`` (learned parameters ``phi``) on the window's MSE,
    with iMAML's ``proximal`` term; one SGD step by default (GrBAL as published, MB+DE)."""

    inner: InnerStep
    phi: list[torch.Tensor] = dataclasses.field(default_factory=list)
    steps: int = 1
    proximal: float = 0.0

    def __repr__(self) -> str:  # short: vmap formats its function's repr on every call, and phi can be large
        return f"Adaptation({self.inner.name}, {len(self.phi)} learned tensors, steps={self.steps}, " \
               f"proximal={self.proximal})"  # fmt: skip

    @classmethod
    def sgd(cls, lr: float) -> Adaptation:
        return cls(SGD(lr))

    @classmethod
    def of(cls, settings: Any, phi: Sequence[torch.Tensor]) -> Adaptation:
        """From the meta-learning fields of a config (``MBConfig`` / ``MetaSettings``) and the learned phi."""
        s = MetaSettings.of(settings)
        return cls(make_inner_step(s), list(phi), s.inner_steps, s.proximal)

    @classmethod
    def from_record(cls, record: dict[str, Any] | None, inner: Sequence[np.ndarray], lr: float) -> Adaptation:
        """From a model file's ``adaptation`` record (``meta_learners.describe``) and its inner arrays; None (older
        models) is one SGD step of ``lr``."""
        if not record:
            return cls.sgd(lr)
        settings = MetaSettings(meta_learner=record["meta_learner"], inner_step=record["inner_step"],
                                inner_steps=int(record["steps"]), inner_lr=lr,
                                imaml_lambda=float(record["proximal"]) or 1.0,
                                lstm_hidden=int(record.get("lstm_hidden", 20)),
                                lstm_scale=float(record.get("lstm_scale", 0.01)))  # fmt: skip
        return cls.of(settings, dm.from_numpy(inner))

    def __call__(
        self, params: dm.Params, stats: dm.TorchStats, obs: torch.Tensor, act: torch.Tensor, nxt: torch.Tensor
    ) -> dm.Params:
        """The adapted weights after the window obs [M, d], act [M, a], nxt [M, d]."""

        def loss(p: dm.Params, data: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return dm.mse(p, stats, *data)

        return adapt(loss, params, (obs, act, nxt), self.inner, self.phi, self.steps, proximal=self.proximal).params


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


class TorchOnlineModel:
    """E episodes of one trained model in ``mode``; ``window`` = M, ``lr`` the adaptation step size of plain SGD
    (``adaptation`` replaces it: the meta-trained inner step of a GrBAL model)."""

    def __init__(
        self,
        mode: str,
        spec: DynamicsSpec,
        params: list[np.ndarray],
        stats: DynamicsStats,
        envs: int,
        window: int = 16,
        lr: float = 0.01,
        adaptation: Adaptation | None = None,
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
        step = adaptation or Adaptation.sgd(lr)
        self._adapt_batch = vmap(step.__call__, in_dims=(0, None, 0, 0, 0))
        self._adapt_shared = vmap(step.__call__, in_dims=(None, None, 0, 0, 0))
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
            after = self._adapt_shared(self.params, self.stats, obs, act, nxt)
        else:
            after = self._adapt_batch(self.current, self.stats, obs, act, nxt)
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
