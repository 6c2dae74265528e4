"""Meta-gradient estimators, interchangeable behind one interface: MAML, first-order MAML, iMAML, Evo-MAML.

Every estimator maps meta-parameters (theta: the model's initialization; phi: the inner step's learned
parameters, see ``inner_steps``) and a meta-batch of B tasks (support / query data, each a tuple of tensors
with a leading B axis) to ``MetaGrad(value, d/dtheta, d/dphi)`` of the meta-loss
mean_b L(adapt(theta; support_b); query_b). In GrBAL (Nagabandi et al., ICLR 2019) a task is a window of
transitions: support = the past M, query = the next K.

- ``maml`` (Finn et al., ICML 2017): exact, differentiates through the unrolled inner steps (second order).
- ``fomaml`` (Finn et al. 2017, Sec. 5.2): the inner gradients are treated as constants, so
  d/dtheta = grad L_query(theta') and no second derivative is ever formed.
- ``imaml`` (Rajeswaran, Finn, Kakade, Levine, NeurIPS 2019, "Meta-Learning with Implicit Gradients"): the
  inner problem min_phi L_s(phi) + lambda/2 |phi - theta|^2 is solved approximately by ``inner_steps`` steps
  from theta, without a graph; the meta-gradient is the implicit one, (I + H_s(phi*) / lambda)^-1
  grad L_q(phi*), solved by ``imaml_cg_steps`` conjugate-gradient iterations on Hessian-vector products
  (Alg. 2, forward-over-reverse). Memory does not grow with the number of inner steps.
- ``evo_maml``: P copies theta + eps_p, eps_p = sigma sign(N(0, I)), each adapted by one first-order inner
  step; fitness f_p = the copy's post-adaptation query loss averaged over the meta-batch; weights
  w = softmax(-f / tau); the combination theta'_b = sum_p w_p theta'_{p,b} per task; the meta-gradient is the
  first-order gradient of the query loss at the combination (w held constant). Choices: docs/meta_learners.md.

The training loop picks one by name: ``make_meta_learner(settings, loss)`` (registry ``META_LEARNERS``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from torch.func import grad, grad_and_value, jvp, vmap

from metactl.train.dynamics_model import Params
from metactl.train.inner_steps import Data, InnerStep, LossFn, adapt, make_inner_step
from metactl.train.meta_settings import MetaSettings

TINY = 1e-30
"""Guards the conjugate-gradient divisions once the residual is exactly zero (float32 keeps 1e-30)."""
LSTM_COORDINATES = 2**16
"""Most coordinates (tasks x parameters) one vmapped chunk feeds the LSTM inner step (~5 kB of activations each).
A meta-batch of 40 windows of a 2x128 model (870k coordinates) peaked at 2.4 GB in one piece; in chunks of this
size it peaks at 370 MB and takes 0.9 s per meta-step (MAML with SGD: 14 ms)."""


class MetaGrad(NamedTuple):
    value: torch.Tensor
    """The meta-loss (scalar) the gradient belongs to."""
    theta: Params
    phi: Params


class MetaLearner:
    """Base: ``meta_grad(theta, phi, support, query, generator)``; support/query tuples of [B, ...] tensors."""

    name: ClassVar[str]

    def __init__(self, settings: MetaSettings, loss: LossFn, inner: InnerStep):
        self.settings, self.loss, self.inner = settings, loss, inner
        self.steps = settings.inner_steps

    def meta_grad(
        self, theta: Params, phi: Params, support: Data, query: Data, generator: torch.Generator | None = None
    ) -> MetaGrad:
        """The meta-loss is a mean over tasks, so it is computed in chunks of tasks where the inner step's
        memory needs it (the LSTM), and the chunks' results averaged with their sizes as weights."""
        tasks = support[0].shape[0]
        size = tasks
        if self.inner.name == "lstm":
            size = max(1, LSTM_COORDINATES // sum(t.numel() for t in theta))
        if size >= tasks:
            return self.chunk_grad(theta, phi, support, query)
        parts = []
        for start in range(0, tasks, size):
            part = slice(start, start + size)
            weight = (min(tasks, start + size) - start) / tasks
            parts.append((weight, self.chunk_grad(theta, phi, *([x[part] for x in d] for d in (support, query)))))
        return MetaGrad(
            sum(w * g.value for w, g in parts),
            [sum(w * g.theta[i] for w, g in parts) for i in range(len(theta))],
            [sum(w * g.phi[i] for w, g in parts) for i in range(len(phi))],
        )  # type: ignore[arg-type]

    def chunk_grad(self, theta: Params, phi: Params, support: Data, query: Data) -> MetaGrad:
        """``meta_grad`` on one chunk of tasks."""
        raise NotImplementedError


class MAML(MetaLearner):
    """Exact: torch.func differentiates the meta-loss through every unrolled inner step."""

    name = "maml"
    first_order = False

    def meta_loss(self, theta: Params, phi: Params, support: Data, query: Data) -> torch.Tensor:
        def one(s: Data, q: Data) -> torch.Tensor:
            adapted = adapt(self.loss, theta, s, self.inner, phi, self.steps, first_order=self.first_order)
            return self.loss(adapted.params, q)

        return vmap(one)(support, query).mean()

    def chunk_grad(self, theta: Params, phi: Params, support: Data, query: Data) -> MetaGrad:
        (g_theta, g_phi), value = grad_and_value(self.meta_loss, argnums=(0, 1))(theta, phi, support, query)
        return MetaGrad(value, g_theta, g_phi)


class FOMAML(MAML):
    """First-order MAML: the same meta-loss with the inner gradients detached (no second derivatives)."""

    name = "fomaml"
    first_order = True


def conjugate_gradient(matvec: Callable[[Params], Params], b: Params, iterations: int) -> Params:
    """x ~= A^-1 b for symmetric A given as ``matvec``: a fixed number of iterations from x = 0 (no data-dependent
    branch, so it runs under vmap). Truncated where A shows curvature p^T A p <= 0 along a search direction (A is
    positive definite only at a converged inner solution): x stays where it was, as truncated Newton-CG does."""

    def dot(u: Params, v: Params) -> torch.Tensor:
        return sum((ui * vi).sum() for ui, vi in zip(u, v, strict=True))  # type: ignore[return-value]

    x = [torch.zeros_like(bi) for bi in b]
    r, p = list(b), list(b)
    rs = dot(r, r)
    active = torch.ones_like(rs, dtype=torch.bool)
    for _ in range(iterations):
        ap = matvec(p)
        curvature = dot(p, ap)
        active = active & (curvature > 0)
        alpha = torch.where(active, rs / torch.where(active, curvature, 1.0), 0.0)
        x = [xi + alpha * pi for xi, pi in zip(x, p, strict=True)]
        r = [ri - alpha * api for ri, api in zip(r, ap, strict=True)]
        rs_new = dot(r, r)
        p = [ri + (rs_new / (rs + TINY)) * pi for ri, pi in zip(r, p, strict=True)]
        rs = rs_new
    return x


class IMAML(MetaLearner):
    """Rajeswaran et al. 2019, Alg. 1-2: the inner solution phi* carries no graph; the gradient is implicit."""

    name = "imaml"

    def chunk_grad(self, theta: Params, phi: Params, support: Data, query: Data) -> MetaGrad:
        lam, damping = self.settings.imaml_lambda, self.settings.imaml_cg_damping
        anchor = [t.detach() for t in theta]

        def one(s: Data, q: Data) -> tuple[torch.Tensor, Params]:
            sol = adapt(self.loss, anchor, s, self.inner, [], self.steps, proximal=lam, first_order=True).params
            sol = [x.detach() for x in sol]
            g_query, value = grad_and_value(self.loss)(sol, q)

            def matvec(v: Params) -> Params:  # (I + H_s(phi*) / lambda + damping I) v
                hv = jvp(lambda p: grad(self.loss)(p, s), (sol,), (v,))[1]
                return [vi * (1.0 + damping) + hvi / lam for vi, hvi in zip(v, hv, strict=True)]

            return value, conjugate_gradient(matvec, g_query, self.settings.imaml_cg_steps)

        values, grads = vmap(one)(support, query)
        return MetaGrad(values.mean(), [g.mean(0) for g in grads], [])


def draw_perturbations(theta: Params, population: int, sigma: float, generator: torch.Generator) -> Params:
    """eps_p = sigma sign(N(0, I)): one [P, *shape] tensor per parameter (entries exactly +-sigma)."""
    return [sigma * torch.sign(torch.randn((population, *t.shape), generator=generator, dtype=t.dtype)) for t in theta]


class EvoMAML(MetaLearner):
    """Evo-MAML as issue 19 states it (see the module docstring and docs/meta_learners.md for the open choices)."""

    name = "evo_maml"

    def meta_grad(
        self, theta: Params, phi: Params, support: Data, query: Data, generator: torch.Generator | None = None
    ) -> MetaGrad:
        if generator is None:
            raise ValueError("evo_maml draws its perturbations from an explicit torch.Generator; pass one")
        eps = draw_perturbations(theta, self.settings.evo_population, self.settings.evo_sigma, generator)
        return self.meta_grad_with(theta, phi, support, query, eps)

    def meta_grad_with(self, theta: Params, phi: Params, support: Data, query: Data, eps: Params) -> MetaGrad:
        """The estimate for given perturbations ``eps`` (one [P, *shape] tensor per parameter)."""
        loss, inner, tau = self.loss, self.inner, self.settings.evo_temperature

        def combined_loss(theta: Params, phi: Params) -> tuple[torch.Tensor, torch.Tensor]:
            def copy(e: Params, s: Data) -> Params:  # one perturbed copy adapted on one task: one first-order step
                start = [t + ei for t, ei in zip(theta, e, strict=True)]
                return adapt(loss, start, s, inner, phi, 1, first_order=True).params

            adapted = vmap(vmap(copy, in_dims=(None, 0)), in_dims=(0, None))(eps, support)  # [P, B, ...]
            post = vmap(vmap(loss), in_dims=(0, None))(adapted, query)  # [P, B]
            w = torch.softmax(-post.detach().mean(1) / tau, dim=0)  # constant: the gradient is first order
            combo = [(w.reshape(-1, *[1] * (a.dim() - 1)) * a).sum(0) for a in adapted]  # [B, ...]
            return vmap(loss)(combo, query).mean(), w

        (g_theta, g_phi), (value, _) = grad_and_value(combined_loss, argnums=(0, 1), has_aux=True)(theta, phi)
        return MetaGrad(value, g_theta, g_phi)


META_LEARNERS: dict[str, type[MetaLearner]] = {c.name: c for c in (MAML, FOMAML, IMAML, EvoMAML)}
"""meta_learner name -> estimator class."""


def make_meta_learner(settings: MetaSettings, loss: LossFn) -> MetaLearner:
    """The estimator ``settings.meta_learner`` with its inner step, for the per-task loss ``loss``."""
    return META_LEARNERS[settings.meta_learner](settings, loss, make_inner_step(settings))


def init_inner(settings: MetaSettings, theta: Params, generator: torch.Generator) -> Params:
    """The learned parameters phi of ``settings.inner_step`` for a model with parameters ``theta``."""
    return make_inner_step(settings).init(theta, generator)


def describe(settings: Any) -> dict[str, Any]:
    """What a trained model records about how it adapts (model file ``extra`` and bundle metadata)."""
    s = MetaSettings.of(settings)
    out = {"meta_learner": s.meta_learner, "inner_step": s.inner_step, "steps": s.inner_steps,
           "proximal": s.proximal, "inner_lr": s.inner_lr}  # fmt: skip
    if s.inner_step == "lstm":
        out |= {"lstm_hidden": s.lstm_hidden, "lstm_scale": s.lstm_scale}
    return out
