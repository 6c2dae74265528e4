"""Deterministic policies over a flat parameter vector, with numpy inference.

ES-MAML (Song et al., ICLR 2020) meta-trains compact deterministic policies:
linear by default, small tanh MLPs optionally. Parameters live in one flat
vector so evolution strategies can perturb them; ``PolicySpec.unflatten``
gives the layer view. The squashed output ``tanh`` is mapped to the actuator
range [low, high] and clipped to it.

Non-finite inputs behave the same wherever a policy runs (this numpy code, the exported ONNX graph, the
C export): the normalizer clips +-inf and huge observations to +-``CLIP``, so they give bounded actions;
a NaN observation gives NaN actions, never a plausible-looking command. The robot's safety layer turns a
non-finite command into the safe command and counts it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any

import numpy as np

from metactl.controllers.normalizer import NormalizerSnapshot

POLICY_KINDS = ("linear", "mlp")


class PolicyError(ValueError):
    """A policy was specified wrongly (user-facing)."""


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """Architecture of a policy: ``obs_dim (+ context) -> hidden... -> act_dim`` with tanh units.

    ``context`` > 0 gives the first layer that many extra inputs whose values are parameters themselves, the
    last ``context`` entries of the flat vector (CAVIA's context parameters, Zintgraf et al. 2019): adapting
    only them moves the first layer's biases within a learned ``context``-dimensional subspace, so a few
    queries can search it. Their weights are the first layer's last ``context`` rows.
    """

    kind: str
    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    hidden: tuple[int, ...] = ()
    context: int = 0

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise PolicyError(f"unknown policy kind {self.kind!r}; choose one of {POLICY_KINDS}")
        if self.kind == "linear" and self.hidden:
            object.__setattr__(self, "hidden", ())
        if self.kind == "mlp" and not self.hidden:
            raise PolicyError("an 'mlp' policy needs at least one hidden layer size")
        if len(self.action_low) != self.act_dim or len(self.action_high) != self.act_dim:
            raise PolicyError("action_low/action_high must have act_dim entries")
        if isinstance(self.context, bool) or not isinstance(self.context, int) or self.context < 0:
            raise PolicyError(f"context must be an integer >= 0, got {self.context!r}")

    @functools.cached_property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.obs_dim, *self.hidden, self.act_dim)

    @functools.cached_property
    def layout(self) -> tuple[tuple[int, int, int, int, int], ...]:
        """Per layer (in, out, weights start, biases start, biases stop) in the flat parameter vector; the first
        layer's inputs include the context (its weights' last rows), and the context values follow the layers."""
        layout, k = [], 0
        for i, o in itertools.pairwise((self.obs_dim + self.context, *self.layer_sizes[1:])):
            layout.append((i, o, k, k + i * o, k + i * o + o))
            k += i * o + o
        return tuple(layout)

    @functools.cached_property
    def num_params(self) -> int:
        return self.layout[-1][4] + self.context

    def context_span(self) -> tuple[int, int]:
        """[start, stop) of the context values in the flat parameter vector (an adaptation ``span``)."""
        if not self.context:
            raise PolicyError("the policy has no context inputs (context = 0)")
        return self.num_params - self.context, self.num_params

    @functools.cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(low, high, high - low) as arrays, made once: ``forward`` runs once per control step."""
        low, high = np.asarray(self.action_low, dtype=np.float64), np.asarray(self.action_high, dtype=np.float64)
        return low, high, high - low

    def unflatten(self, params: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Views (W [..., in, out], b [..., out]) per layer; ``params`` is [P] or [N, P]."""
        if params.shape[-1] != self.num_params:
            raise PolicyError(f"expected {self.num_params} parameters, got {params.shape[-1]}")
        lead = params.shape[:-1]
        return [(params[..., w:b].reshape(*lead, i, o), params[..., b:end]) for i, o, w, b, end in self.layout]

    def effective_layers(self, params: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(W, b) per layer as a forward pass applies them to the normalized observation: ``unflatten``'s, with a
        context folded into the first layer (its observation rows, and b + z W_context), as the ONNX graph and
        the C export compute it."""
        layers = self.unflatten(params)
        if self.context:
            (w, b), z = layers[0], params[..., slice(*self.context_span())]
            layers[0] = (w[..., : self.obs_dim, :], b + np.einsum("...i,...io->...o", z, w[..., self.obs_dim :, :]))
        return layers

    def bias_span(self, layer: int = 0) -> tuple[int, int]:
        """[start, stop) of layer ``layer``'s biases in the flat parameter vector (an adaptation ``span``)."""
        if not 0 <= layer < len(self.layout):
            raise PolicyError(f"layer {layer} is not one of the policy's {len(self.layout)} layers")
        return self.layout[layer][3], self.layout[layer][4]

    def init_params(self, rng: np.random.Generator) -> np.ndarray:
        """Zeros for linear policies (as ARS/ES-MAML); scaled Gaussian weights for MLPs. Context values start
        at 0 and their weights at unit scale, so a context step of 1 moves each first-layer bias by about 1."""
        params = np.zeros(self.num_params)
        if self.kind == "mlp":
            for w, _ in self.unflatten(params):
                w[...] = rng.standard_normal(w.shape) / np.sqrt(w.shape[0])
        if self.context:
            w0 = self.unflatten(params)[0][0]
            w0[self.obs_dim :] = rng.standard_normal(w0[self.obs_dim :].shape)
        return params

    def forward(self, params: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """Actions for normalized observations ``obs`` [N, obs_dim].

        ``params`` is [P] (one policy for all rows) or [N, P] (one policy per row, as in
        ES where every rollout has its own perturbation).
        """
        x = obs
        for w, b in self.effective_layers(params):
            x = x @ w + b if w.ndim == 2 else np.einsum("ni,nio->no", x, w) + b
            x = np.tanh(x)
        low, high, span = self._bounds
        action = low + 0.5 * (x + 1.0) * span
        # clipped; NaN propagates (as in the ONNX graph and the C export): see the module doc
        return np.minimum(np.maximum(action, low, out=action), high, out=action)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicySpec:
        d = dict(data)
        for key in ("action_low", "action_high", "hidden"):
            d[key] = tuple(d.get(key, ()))
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data; ``context`` only when there is one, so context-free specs read as before."""
        d = dataclasses.asdict(self)
        if not self.context:
            del d["context"]
        return d


@dataclasses.dataclass(frozen=True)
class Policy:
    """A deployable policy: architecture, parameters and a frozen observation normalizer."""

    spec: PolicySpec
    params: np.ndarray
    normalizer: NormalizerSnapshot

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Action [act_dim] for one raw observation [obs_dim]."""
        return self.act_batch(np.asarray(obs, dtype=np.float64)[None])[0]

    def act_batch(self, obs: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
        """Actions [N, act_dim] for raw observations [N, obs_dim]; ``params`` overrides (per row)."""
        p = self.params if params is None else params
        return self.spec.forward(p, self.normalizer.normalize(obs))

    def with_params(self, params: np.ndarray) -> Policy:
        return dataclasses.replace(self, params=np.asarray(params, dtype=np.float64))
