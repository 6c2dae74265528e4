"""RL²'s policy (Duan et al. 2016, Sec. 2.2): a GRU that reads (observation, previous action, previous reward,
previous termination flag) at every step and keeps its hidden state across the episodes of a trial, so the
"fast" learning algorithm lives in the state; a policy head (categorical logits, or a Gaussian's mean with a
state-independent log-std) and a value head read the state.

Input layout [in_dim] = obs [obs_dim] | previous action (one-hot [A] or the action vector [act_dim]) | previous
reward [1] | previous done [1], normalized by fixed ``in_mean`` / ``in_std`` (identity for the discrete families);
the exported ONNX step (``deploy.rl2_export``) folds the same normalization in.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class RL2Spec:
    """Sizes of a GRU policy: ``actions`` is the number of discrete actions, or the action dimension."""

    obs_dim: int
    actions: int
    discrete: bool
    hidden: int

    @property
    def in_dim(self) -> int:
        return self.obs_dim + self.actions + 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RL2Spec:
        return cls(int(data["obs_dim"]), int(data["actions"]), bool(data["discrete"]), int(data["hidden"]))


def policy_input(
    spec: RL2Spec, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, done: np.ndarray
) -> np.ndarray:
    """Raw GRU inputs [B, in_dim] from obs [B, obs_dim], previous actions ([B] ints or [B, act_dim]), rewards [B]
    and done flags [B]; at a trial's first step all three previous values are zeros."""
    b = obs.shape[0]
    if spec.discrete:
        act = np.zeros((b, spec.actions))
        act[np.arange(b), np.asarray(action, dtype=np.int64)] = 1.0
    else:
        act = np.asarray(action, dtype=np.float64).reshape(b, spec.actions)
    return np.concatenate([obs, act, np.asarray(reward).reshape(b, 1), np.asarray(done).reshape(b, 1)], axis=1)


class RL2Policy(nn.Module):
    """GRU policy and value function over whole trials: ``forward(x [T, B, in_dim], h [1, B, H])``."""

    def __init__(self, spec: RL2Spec, generator: torch.Generator, init_log_std: float = -0.5):
        super().__init__()
        self.spec = spec
        self.gru = nn.GRU(spec.in_dim, spec.hidden)
        self.pi = nn.Linear(spec.hidden, spec.actions)
        self.v = nn.Linear(spec.hidden, 1)
        self.log_std = nn.Parameter(torch.full((spec.actions,), float(init_log_std)), requires_grad=not spec.discrete)
        self.register_buffer("in_mean", torch.zeros(spec.in_dim))
        self.register_buffer("in_std", torch.ones(spec.in_dim))
        self.register_buffer("ret_scale", torch.ones(()))  # the value head predicts returns / ret_scale
        self._init(generator)

    def _init(self, gen: torch.Generator) -> None:
        """Uniform(+-1/sqrt(H)) as torch's default, drawn from ``gen``; small policy head (near-uniform actions)."""
        bound = 1.0 / math.sqrt(self.spec.hidden)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name == "log_std":
                    continue
                scale = 0.01 if name.startswith("pi.") else bound
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * scale)

    def initial_state(self, batch: int) -> torch.Tensor:
        """The state at a trial's start: zeros [1, B, H]."""
        return torch.zeros(1, batch, self.spec.hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(head [T, B, A]: logits or Gaussian means, values [T, B], final state [1, B, H])."""
        out, h_last = self.gru((x - self.in_mean) / self.in_std, h)
        return self.pi(out), self.v(out).squeeze(-1), h_last

    def log_prob(self, head: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a) [T, B] of the actions ([T, B] ints or [T, B, act_dim])."""
        if self.spec.discrete:
            return torch.log_softmax(head, -1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        z = (actions - head) / self.log_std.exp()
        return (-0.5 * z**2 - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self, head: torch.Tensor) -> torch.Tensor:
        """Entropy [T, B] of the action distribution."""
        if self.spec.discrete:
            logp = torch.log_softmax(head, -1)
            return -(logp.exp() * logp).sum(-1)
        return (self.log_std + 0.5 * math.log(2 * math.pi * math.e)).sum().expand(head.shape[:-1])

    def sample(self, head: torch.Tensor, gen: torch.Generator, greedy: bool = False) -> torch.Tensor:
        """Actions for one step's head [B, A] drawn with ``gen`` ([B] ints, or [B, act_dim]); ``greedy``: the mode."""
        if self.spec.discrete:
            if greedy:
                return head.argmax(-1)
            return torch.multinomial(torch.softmax(head, -1), 1, generator=gen).squeeze(-1)
        if greedy:
            return head
        return head + self.log_std.exp() * torch.randn(head.shape, generator=gen)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer as float32 numpy (the ``rl2.npz`` layout, read by the exporter)."""
        return {k: v.detach().numpy().astype(np.float32) for k, v in self.state_dict().items()}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.load_state_dict({k: torch.as_tensor(np.asarray(arrays[k])) for k in self.state_dict()})
