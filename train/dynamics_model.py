"""The dynamics models of ``controllers.dynamics`` in torch, with the GrBAL and ReBAL losses (training side).

Nagabandi et al., ICLR 2019. Everything is a pure function of an explicit parameter list (the
order of ``DynamicsSpec.param_shapes``), so ``torch.func`` can take exact second-order
meta-gradients and batch per-episode adapted weights with ``vmap``:

- GrBAL (Sec. 4.1): theta' = theta - alpha * grad L(theta; past M transitions); the meta-loss is
  L(theta'; next K transitions), averaged over windows. ``first_order=True`` stops the gradient
  through grad L (first-order MAML).
- ReBAL (Sec. 4.2): an LSTM reads the window's inputs x = (obs, act) in order; each step's delta is
  predicted from x and the state after it, so the state carries the history (the reference code's
  recurrent model, which the MPC also steps through each candidate's rollout). The loss is on the last K.
L is the mean squared error of the normalized state delta.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.func import grad, vmap

from metactl.controllers.dynamics import DynamicsSpec, DynamicsStats

Params = list[torch.Tensor]
DTYPE = torch.float32


def init_params(spec: DynamicsSpec, generator: torch.Generator) -> Params:
    """torch.nn.Linear's default init (uniform +-1/sqrt(fan_in)) for every layer, torch.nn.LSTM's for the LSTM."""
    shapes = spec.param_shapes()
    lstm = 3 if spec.kind == "recurrent" else 0
    bounds = [1.0 / math.sqrt(spec.rnn_hidden)] * lstm if lstm else []
    bounds += [1.0 / math.sqrt(shapes[lstm + 2 * (i // 2)][0]) for i in range(len(shapes) - lstm)]
    return [(torch.rand(s, generator=generator, dtype=DTYPE) * 2 - 1) * b for s, b in zip(shapes, bounds, strict=True)]


def init_mlp(sizes: Sequence[int], generator: torch.Generator) -> Params:
    """A ReLU MLP's W0, b0, W1, b1, ... for layer widths ``sizes`` (input first), torch.nn.Linear's init."""
    out: Params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        bound = 1.0 / math.sqrt(fan_in)
        for shape in ((fan_in, fan_out), (fan_out,)):
            out.append((torch.rand(shape, generator=generator, dtype=DTYPE) * 2 - 1) * bound)
    return out


def to_numpy(params: Sequence[torch.Tensor]) -> list[np.ndarray]:
    return [p.detach().cpu().numpy().astype(np.float32) for p in params]


def from_numpy(arrays: Sequence[np.ndarray]) -> Params:
    return [torch.tensor(np.asarray(a), dtype=DTYPE) for a in arrays]


class TorchStats:
    """``DynamicsStats`` as float32 tensors."""

    def __init__(self, stats: DynamicsStats):
        t = {k: torch.tensor(getattr(stats, k), dtype=DTYPE) for k in DynamicsStats.field_names()}
        self.obs_mean, self.obs_std = t["obs_mean"], t["obs_std"]
        self.act_mean, self.act_std = t["act_mean"], t["act_std"]
        self.delta_mean, self.delta_std = t["delta_mean"], t["delta_std"]

    def inputs(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.cat([(obs - self.obs_mean) / self.obs_std, (act - self.act_mean) / self.act_std], dim=-1)

    def target(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return (next_obs - obs - self.delta_mean) / self.delta_std

    def next_obs(self, obs: torch.Tensor, delta_n: torch.Tensor) -> torch.Tensor:
        return obs + self.delta_mean + self.delta_std * delta_n


def mlp(params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """ReLU MLP over the last axis; ``params`` = W0, b0, W1, b1, ... (no activation after the last layer)."""
    n = len(params) // 2
    for i in range(n):
        x = x @ params[2 * i] + params[2 * i + 1]
        if i < n - 1:
            x = torch.relu(x)
    return x


def mlp_batched(params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``mlp`` with one weight set per episode: params W [E, in, out], b [E, out]; x [E, N, in] -> [E, N, out]."""
    n = len(params) // 2
    for i in range(n):
        x = torch.baddbmm(params[2 * i + 1][:, None, :], x, params[2 * i])
        if i < n - 1:
            x = torch.relu(x)
    return x


def lstm_step(
    params: Sequence[torch.Tensor], z: torch.Tensor, h: torch.Tensor, c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step (gates i, f, g, o): z [..., Z], h and c [..., H] -> (h', c')."""
    w_z, w_h, b = params[0], params[1], params[2]
    i, f, g, o = (z @ w_z + h @ w_h + b).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def mse(params: Params, stats: TorchStats, obs: torch.Tensor, act: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the MLP's normalized-delta prediction on transitions [..., T, ...]."""
    return ((mlp(params, stats.inputs(obs, act)) - stats.target(obs, nxt)) ** 2).mean()


def adapt_step(
    params: Params,
    stats: TorchStats,
    obs: torch.Tensor,
    act: torch.Tensor,
    nxt: torch.Tensor,
    lr: float | torch.Tensor,
    first_order: bool = False,
) -> Params:
    """GrBAL's inner update theta' = theta - lr * grad mse(theta; obs [M, d], act [M, a], nxt [M, d])."""
    g = grad(mse)(params, stats, obs, act, nxt)
    if first_order:
        g = [gi.detach() for gi in g]
    return [p - lr * gi for p, gi in zip(params, g, strict=True)]


def grbal_meta_loss(
    params: Params,
    stats: TorchStats,
    past: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    future: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    lr: float | torch.Tensor,
    first_order: bool = False,
) -> torch.Tensor:
    """Mean over B windows of mse(theta'; future), theta' adapted on past: past/future tuples of [B, M|K, ...]."""

    def one(p: torch.Tensor, f: torch.Tensor) -> torch.Tensor:  # p, f: one window's (obs, act, nxt)
        return mse(adapt_step(params, stats, *p, lr, first_order), stats, *f)

    return vmap(one)(past, future).mean()


def recurrent_step(
    params: Params, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ReBAL's model step on normalized inputs x [..., d + a]: (h, c) <- LSTM(x, h, c); returns (normalized delta,
    h, c) with the delta read from [x, h]."""
    h, c = lstm_step(params[:3], x, h, c)
    return mlp(params[3:], torch.cat([x, h], dim=-1)), h, c


def lstm_state(
    params: Params, stats: TorchStats, obs: torch.Tensor, act: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """ReBAL's state (h, c) [B, H] after reading the inputs of obs [B, T, d], act [B, T, a] from zero."""
    x = stats.inputs(obs, act)
    h = torch.zeros(obs.shape[0], params[1].shape[0], dtype=DTYPE)
    c = torch.zeros_like(h)
    for k in range(obs.shape[1]):
        h, c = lstm_step(params[:3], x[:, k], h, c)
    return h, c


def rebal_loss(
    params: Params, stats: TorchStats, obs: torch.Tensor, act: torch.Tensor, nxt: torch.Tensor, m: int
) -> torch.Tensor:
    """ReBAL: windows obs [B, T, d], act [B, T, a], nxt [B, T, d] read from a zero state; the loss covers steps
    m..T-1 (the first m only warm the state up), each predicted after the state took in that step's input."""
    h, c = lstm_state(params, stats, obs[:, :m], act[:, :m])
    x, target = stats.inputs(obs, act), stats.target(obs, nxt)
    losses = []
    for k in range(m, obs.shape[1]):
        delta, h, c = recurrent_step(params, x[:, k], h, c)
        losses.append(((delta - target[:, k]) ** 2).mean())
    return torch.stack(losses).mean()


def predict(params: Params, stats: TorchStats, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Next observations of the MLP model."""
    return stats.next_obs(obs, mlp(params, stats.inputs(obs, act)))


def predict_recurrent(
    params: Params, stats: TorchStats, obs: torch.Tensor, act: torch.Tensor, h: torch.Tensor, c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ReBAL's next observations and the new state (h, c) [..., H] of each row of obs [..., d], act [..., a]."""
    delta, h, c = recurrent_step(params, stats.inputs(obs, act), h, c)
    return stats.next_obs(obs, delta), h, c
