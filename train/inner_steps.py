"""Inner (adaptation) steps of gradient-based meta-learning, and the inner loop ``adapt`` that runs them.

- ``sgd`` (Finn et al., ICML 2017, MAML): theta <- theta - alpha g, alpha = ``inner_lr`` fixed.
- ``meta_sgd`` (Li et al., 2017, "Meta-SGD"): theta <- theta - alpha (.) g with one learned step size per
  parameter, initialized at ``inner_lr`` and meta-trained with theta.
- ``lstm`` (Andrychowicz et al., NeurIPS 2016, "Learning to learn by gradient descent by gradient descent"):
  a coordinatewise two-layer LSTM m_phi maps each coordinate's gradient to its update, theta <- theta + m_phi(g);
  every coordinate has its own state (h, c) per layer, the weights phi are shared. As the paper's reference code
  (google-deepmind/learning-to-learn): gradients are preprocessed by LogAndSign with k = 5 (App. A),
  [max(log(|g| + eps) / k, -1), clip(e^k g, -1, 1)], and the linear output is scaled by ``lstm_scale``.

An inner step is a pure function ``update(params, grads, phi, state) -> (params, state)`` of explicit tensors
(phi: its learned parameters, [] for SGD; state: the LSTM's per-coordinate (h, c), [] otherwise), so
``torch.func`` differentiates and vmaps through it. The LSTM has one weight matrix per gate, so every gate is a
contiguous [n, H] block and no batched matmul needs a copy under vmap (3x faster than one [in, 4H] matrix whose
gate columns are strided); the ONNX exporter (``deploy.adapt_export``) writes the same layout out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from torch.func import grad

from metactl.train.dynamics_model import DTYPE, Params

Data = tuple[torch.Tensor, ...]
LossFn = Callable[[Params, Data], torch.Tensor]
"""loss(params, data) -> scalar: one task's loss, e.g. the MSE of a model on a window of transitions."""
LOG_SIGN_K = 5.0
"""LogAndSign's k in the reference code (util.get_default_net_config); the paper's App. A writes p = 10."""
EPS = float(torch.finfo(DTYPE).eps)


class InnerStep:
    """theta <- update(theta, grad, phi, state); subclasses name their learned parameters phi and their state."""

    name: ClassVar[str]

    def init(self, params: Sequence[torch.Tensor], generator: torch.Generator) -> Params:
        """The learned parameters phi of this step (meta-trained with theta), [] when there are none."""
        return []

    def init_state(self, params: Sequence[torch.Tensor]) -> Params:
        """The step's state before the first inner step of an adaptation ([] for stateless steps)."""
        return []

    def update(self, params: Params, grads: Params, phi: Params, state: Params) -> tuple[Params, Params]:
        raise NotImplementedError


class SGD(InnerStep):
    name = "sgd"

    def __init__(self, lr: float):
        self.lr = lr

    def update(self, params: Params, grads: Params, phi: Params, state: Params) -> tuple[Params, Params]:
        return [p - self.lr * g for p, g in zip(params, grads, strict=True)], state


class MetaSGD(InnerStep):
    """Li et al. 2017: a learned step size alpha_i per coordinate (phi has theta's shapes)."""

    name = "meta_sgd"

    def __init__(self, lr: float):
        self.lr = lr

    def init(self, params: Sequence[torch.Tensor], generator: torch.Generator) -> Params:
        return [torch.full_like(p, self.lr) for p in params]

    def update(self, params: Params, grads: Params, phi: Params, state: Params) -> tuple[Params, Params]:
        return [p - a * g for p, a, g in zip(params, phi, grads, strict=True)], state


def log_and_sign(g: torch.Tensor, k: float = LOG_SIGN_K) -> torch.Tensor:
    """Andrychowicz et al. App. A (reference code's form): g [n] -> [n, 2] = (log magnitude, clipped sign)."""
    log = torch.clamp(torch.log(g.abs() + EPS) / k, min=-1.0)
    return torch.stack([log, torch.clamp(g * math.exp(k), -1.0, 1.0)], dim=-1)


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1: torch's CPU tanh ran ~10x slower than its sigmoid on these [n, H] blocks (the
    LSTM optimizer's bottleneck); the exported graph uses the same formula."""
    return 2.0 * torch.sigmoid(2.0 * x) - 1.0


def lstm_cell(
    w: Sequence[torch.Tensor], x: torch.Tensor, h: torch.Tensor | None, c: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step over n coordinates with one weight matrix per gate (every gate a contiguous [n, H] block):
    x [n, in], h and c [n, H] or None for the zero state; w = (W_x [4, in, H], W_h [4, H, H], b [4, H]), gates
    i, f, g, o."""

    def gate(k: int) -> torch.Tensor:
        z = x @ w[0][k] + w[2][k]
        return z if h is None else z + h @ w[1][k]

    c_new = torch.sigmoid(gate(0)) * fast_tanh(gate(2))
    if c is not None:
        c_new = c_new + torch.sigmoid(gate(1)) * c
    return torch.sigmoid(gate(3)) * fast_tanh(c_new), c_new


class LSTMOptimizer(InnerStep):
    """Andrychowicz et al. 2016: coordinatewise 2-layer LSTM of width H over the n coordinates of all parameters
    (flattened in ``param_shapes`` order). phi = [layer 0 (W_x [4, 2, H], W_h [4, H, H], b [4, H]), layer 1
    (W_x [4, H, H], W_h, b), W_out [H, 1], b_out [1]]; state = [h0, c0, h1, c1], each [n, H]; the zero state is
    [] (the first step skips its recurrent terms)."""

    name = "lstm"
    INPUTS = 2

    def __init__(self, hidden: int, scale: float):
        self.hidden, self.scale = hidden, scale

    def param_shapes(self) -> list[tuple[int, ...]]:
        h = self.hidden
        layer0 = [(4, self.INPUTS, h), (4, h, h), (4, h)]
        return [*layer0, (4, h, h), (4, h, h), (4, h), (h, 1), (1,)]

    def init(self, params: Sequence[torch.Tensor], generator: torch.Generator) -> Params:
        """torch.nn.LSTM's and torch.nn.Linear's init: uniform +-1/sqrt(H)."""
        bound = 1.0 / math.sqrt(self.hidden)
        return [(torch.rand(s, generator=generator, dtype=DTYPE) * 2 - 1) * bound for s in self.param_shapes()]

    def zero_state(self, params: Sequence[torch.Tensor]) -> Params:
        """The zero state as tensors [n, H] (what the exported graph is fed before an adaptation)."""
        n = sum(p.numel() for p in params)
        return [params[0].new_zeros(n, self.hidden) for _ in range(4)]

    def update(self, params: Params, grads: Params, phi: Params, state: Params) -> tuple[Params, Params]:
        x = log_and_sign(torch.cat([g.reshape(-1) for g in grads]))
        h0, c0, h1, c1 = state or (None, None, None, None)
        h0, c0 = lstm_cell(phi[0:3], x, h0, c0)
        h1, c1 = lstm_cell(phi[3:6], h0, h1, c1)
        step = ((h1 @ phi[6] + phi[7]) * self.scale).reshape(-1)
        pieces = step.split([p.numel() for p in params])
        return [p + s.reshape(p.shape) for p, s in zip(params, pieces, strict=True)], [h0, c0, h1, c1]


INNER_STEPS: dict[str, Callable[[Any], InnerStep]] = {
    "sgd": lambda s: SGD(s.inner_lr),
    "meta_sgd": lambda s: MetaSGD(s.inner_lr),
    "lstm": lambda s: LSTMOptimizer(s.lstm_hidden, s.lstm_scale),
}
"""inner_step name -> factory from a ``MetaSettings`` (or ``MBConfig``)."""


def make_inner_step(settings: Any) -> InnerStep:
    return INNER_STEPS[settings.inner_step](settings)


class Adapted(NamedTuple):
    params: Params
    state: Params
    """The inner step's state after the last step (the LSTM's, exported with it)."""


def adapt(
    loss: LossFn,
    params: Params,
    data: Data,
    inner: InnerStep,
    phi: Params,
    steps: int,
    *,
    proximal: float = 0.0,
    first_order: bool = False,
) -> Adapted:
    """``steps`` inner steps from ``params`` on one task's ``data``, with gradients of
    loss(p; data) + proximal / 2 |p - params|^2 (iMAML's proximal inner problem when proximal > 0).

    ``first_order`` stops the gradient through the inner gradients (first-order MAML; Andrychowicz et al.'s
    "drop the second derivatives"): the adapted parameters still depend on ``params`` and ``phi`` through the
    update itself.
    """
    state = inner.init_state(params)
    p = params
    for _ in range(steps):
        g = grad(loss)(p, data)
        if proximal:
            g = [gi + proximal * (pi - ai) for gi, pi, ai in zip(g, p, params, strict=True)]
        if first_order:
            g = [gi.detach() for gi in g]
        p, state = inner.update(p, g, phi, state)
    return Adapted(p, state)
