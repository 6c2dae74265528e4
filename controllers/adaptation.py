"""ES-MAML adaptation operators U(theta, T) as pure ask/tell state machines.

Song et al., "ES-MAML: Simple Hessian-Free Meta Learning", ICLR 2020, Sec. 3:
- ``ESGradient``: K Gaussian queries around theta plus one at theta itself (the
  baseline); theta' = theta + alpha / (sigma K) * sum_i r_i eps_i with returns
  normalized by their spread. K + 1 episodes per step (K + 2 with the evaluation).
- ``HillClimb``: non-smooth and monotone. ``average`` mode proposes one
  perturbation per round and keeps it only if strictly better; ``batch`` mode
  proposes ``batch_size`` and keeps the best if strictly better (what ran on the
  real Minitaur). Every candidate's value is the mean of ``evaluations`` (R)
  episodes (the reference code's ``parallel_evaluations``), and every candidate
  of one adaptation — the starting point included — is evaluated on the same R
  reset seeds, so a candidate wins on its merits, not on a lucky start. ``sampling="stratified"`` spreads a
  batch over the normal's quantiles instead of drawing it (a Latin hypercube; see ``_noise``).

Every query is one episode. The operator never runs episodes itself: ``ask``
returns the parameter vectors to evaluate in the next round and ``tell`` takes
their returns, so the same code adapts thousands of tasks in lockstep inside a
batched simulator and one robot episode by episode. ``seed_slots`` says which
queries start from the same state (same slot, same reset seed). Noise comes from
``default_rng([seed, round])``: a state is reproducible and cheap to ship.

``span`` (start, stop) restricts the perturbations to ``params[start:stop]``, the rest staying as
meta-trained: with the first layer's biases of an MLP this is context adaptation (CAVIA, Zintgraf et al.
2019 — a bias shift is what context inputs add), a few numbers the queries can move far, where a
perturbation of every weight must stay small. With a policy's own context inputs (``PolicySpec.context``) the
span is their values: the search runs in a meta-learned subspace of those biases of one or two dimensions.
"""

from __future__ import annotations

import dataclasses
import functools
from statistics import NormalDist
from typing import Any, Protocol

import numpy as np


class AdaptationError(ValueError):
    """An adaptation operator was configured wrongly (user-facing)."""


@dataclasses.dataclass(frozen=True)
class AdaptState:
    """Where one adaptation stands: current parameters, their return (nan if unknown), the round."""

    params: np.ndarray
    best_return: float
    round: int
    seed: int


class AdaptationOperator(Protocol):
    def schedule(self) -> tuple[int, ...]:
        """Number of queries in each round; identical for every task, so tasks run in lockstep."""

    def start(self, params: np.ndarray, seed: int) -> AdaptState: ...

    def ask(self, state: AdaptState) -> np.ndarray:
        """Parameter vectors [q, P] to evaluate in this round."""

    def tell(self, state: AdaptState, returns: np.ndarray) -> AdaptState:
        """Take the returns [q] of the asked vectors; move to the next round."""

    def seed_slots(self, round: int) -> tuple[int, ...]:
        """The reset-seed slot of each query of ``round``: queries with one slot start from one state."""

    def to_dict(self) -> dict[str, Any]: ...


def seed_slot_count(operator: AdaptationOperator) -> int:
    """Distinct reset seeds one run of ``operator`` needs."""
    return len({s for r in range(len(operator.schedule())) for s in operator.seed_slots(r)})


SAMPLINGS = ("gaussian", "stratified")


@functools.cache
def _normal_quantiles(q: int) -> np.ndarray:
    """``Phi^-1((i + 1/2) / q)`` for i < q: the offsets a stratified batch of q spreads over (read-only, cached)."""
    quantiles = np.array([NormalDist().inv_cdf((i + 0.5) / q) for i in range(q)])
    quantiles.setflags(write=False)
    return quantiles


def _noise(state: AdaptState, q: int, span: tuple[int, int] | None, sampling: str = "gaussian") -> np.ndarray:
    """Perturbation directions [q, P] on ``params[start:stop]`` (all of them without a span), else 0.

    'gaussian': i.i.d. standard normal. 'stratified': a Latin hypercube on the normal's quantiles — each perturbed
    coordinate takes each of the q values ``Phi^-1((i + 1/2) / q)`` once, in a random order per coordinate. With
    one context number this is the same q offsets in every adaptation, so meta-training can put a behaviour
    exactly where a query will look, and no adaptation misses a region by bad luck. An odd q includes the
    quantile 1/2, offset 0: with one perturbed number that query repeats the start point, so use an even batch."""
    a, b = (0, state.params.size) if span is None else span
    if b > state.params.size:
        raise AdaptationError(f"adaptation span {list(span or ())} is beyond the {state.params.size} parameters")
    rng = np.random.default_rng([state.seed, state.round])
    noise = np.zeros((q, state.params.size))
    if sampling == "stratified":
        noise[:, a:b] = _normal_quantiles(q)[np.argsort(rng.random((b - a, q)), axis=1)].T
    else:
        noise[:, a:b] = rng.standard_normal((q, b - a))
    return noise


def _check_span(span: Any) -> tuple[int, int] | None:
    """A span as a tuple of two ints, 0 <= start < stop (JSON gives lists), or None."""
    if span is None:
        return None
    try:
        start, stop = span
        ok = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in (start, stop)) and start < stop
    except (TypeError, ValueError):
        ok = False
    if not ok or start < 0:
        raise AdaptationError(f"adaptation span must be [start, stop) with 0 <= start < stop, got {span!r}")
    return int(start), int(stop)


def _start(params: np.ndarray, seed: int) -> AdaptState:
    return AdaptState(np.asarray(params, dtype=np.float64).copy(), float("nan"), 0, int(seed))


@dataclasses.dataclass(frozen=True)
class ESGradient:
    """``steps`` ES-gradient ascent steps, each from ``queries`` perturbations plus the baseline."""

    queries: int = 20
    sigma: float = 0.1
    step_size: float = 0.05
    steps: int = 1
    span: tuple[int, int] | None = None
    name: str = "es_grad"

    def __post_init__(self) -> None:
        _check_positive(self, ("queries", "sigma", "steps"))
        object.__setattr__(self, "span", _check_span(self.span))
        if self.step_size < 0:
            raise AdaptationError("adaptation step_size must be >= 0")

    def schedule(self) -> tuple[int, ...]:
        return (self.queries + 1,) * self.steps

    def start(self, params: np.ndarray, seed: int) -> AdaptState:
        return _start(params, seed)

    def ask(self, state: AdaptState) -> np.ndarray:
        return np.vstack([state.params[None], state.params + self.sigma * _noise(state, self.queries, self.span)])

    def tell(self, state: AdaptState, returns: np.ndarray) -> AdaptState:
        returns = np.asarray(returns, dtype=np.float64)
        base, perturbed = returns[0], returns[1:]
        spread = perturbed.std()
        advantage = (perturbed - base) / spread if spread > 0 else np.zeros_like(perturbed)
        grad = advantage @ _noise(state, self.queries, self.span) / (self.sigma * self.queries)
        params = state.params + self.step_size * grad
        return AdaptState(params, float("nan"), state.round + 1, state.seed)

    def seed_slots(self, round: int) -> tuple[int, ...]:
        """Each step's queries (and its baseline) share one start state: antithetic-style common random numbers."""
        return (round,) * (self.queries + 1)

    def to_dict(self) -> dict[str, Any]:
        return _settings(self)


@dataclasses.dataclass(frozen=True)
class HillClimb:
    """Monotone hill climbing; ``queries`` perturbations in total after one baseline round, each candidate
    evaluated ``evaluations`` times on the adaptation's shared reset seeds."""

    queries: int = 20
    sigma: float = 0.1
    mode: str = "batch"
    batch_size: int = 5
    evaluations: int = 1
    sampling: str = "gaussian"
    span: tuple[int, int] | None = None
    name: str = "hill_climb"

    def __post_init__(self) -> None:
        _check_positive(self, ("queries", "sigma", "batch_size", "evaluations"))
        object.__setattr__(self, "span", _check_span(self.span))
        if self.mode not in ("average", "batch"):
            raise AdaptationError(f"hill_climb mode must be 'average' or 'batch', got {self.mode!r}")
        if self.sampling not in SAMPLINGS:
            raise AdaptationError(f"hill_climb sampling must be one of {list(SAMPLINGS)}, got {self.sampling!r}")
        if self.sampling == "stratified" and (self.mode != "batch" or self.batch_size < 2):
            raise AdaptationError("hill_climb sampling 'stratified' spreads a round's candidates over the normal's "
                                  "quantiles: use mode 'batch' with batch_size >= 2")  # fmt: skip
        if self.mode == "batch" and self.queries % self.batch_size:
            raise AdaptationError(
                f"hill_climb batch mode needs queries ({self.queries}) divisible by batch_size ({self.batch_size})"
            )

    @property
    def per_round(self) -> int:
        """Candidates per round after the baseline."""
        return 1 if self.mode == "average" else self.batch_size

    def schedule(self) -> tuple[int, ...]:
        r = self.evaluations
        return (r,) + (self.per_round * r,) * (self.queries // self.per_round)

    def seed_slots(self, round: int) -> tuple[int, ...]:
        """Evaluation k of every candidate, in every round, starts from reset seed slot k."""
        return tuple(range(self.evaluations)) * (1 if round == 0 else self.per_round)

    def start(self, params: np.ndarray, seed: int) -> AdaptState:
        return _start(params, seed)

    def _candidates(self, state: AdaptState) -> np.ndarray:
        if state.round == 0:
            return state.params[None].copy()
        return state.params + self.sigma * _noise(state, self.per_round, self.span, self.sampling)

    def ask(self, state: AdaptState) -> np.ndarray:
        """Each candidate repeated ``evaluations`` times (candidate-major)."""
        return np.repeat(self._candidates(state), self.evaluations, axis=0)

    def tell(self, state: AdaptState, returns: np.ndarray) -> AdaptState:
        values = np.asarray(returns, dtype=np.float64).reshape(-1, self.evaluations).mean(axis=1)
        if state.round == 0:
            return AdaptState(state.params, float(values[0]), 1, state.seed)
        best = int(np.argmax(values))
        if values[best] > state.best_return:
            return AdaptState(self._candidates(state)[best], float(values[best]), state.round + 1, state.seed)
        return dataclasses.replace(state, round=state.round + 1)

    def to_dict(self) -> dict[str, Any]:
        return _settings(self)


@dataclasses.dataclass(frozen=True)
class NoAdaptation:
    """U(theta, T) = theta: no queries. Turns ES-MAML into plain ES (e.g. the ARS benchmark)."""

    name: str = "none"

    def schedule(self) -> tuple[int, ...]:
        return ()

    def start(self, params: np.ndarray, seed: int) -> AdaptState:
        return _start(params, seed)

    def ask(self, state: AdaptState) -> np.ndarray:
        return np.zeros((0, state.params.size))

    def tell(self, state: AdaptState, returns: np.ndarray) -> AdaptState:
        return state

    def seed_slots(self, round: int) -> tuple[int, ...]:
        return ()

    def to_dict(self) -> dict[str, Any]:
        return _settings(self)


OPERATORS = {"es_grad": ESGradient, "hill_climb": HillClimb, "none": NoAdaptation}


def make_operator(config: dict[str, Any]) -> AdaptationOperator:
    """Build an operator from ``{"name": "es_grad" | "hill_climb", **fields}``."""
    cfg = dict(config)
    name = cfg.pop("name", None)
    if name not in OPERATORS:
        raise AdaptationError(f"unknown adaptation operator {name!r}; choose one of {sorted(OPERATORS)}")
    cls = OPERATORS[name]
    fields = {f.name for f in dataclasses.fields(cls)} - {"name"}
    unknown = set(cfg) - fields
    if unknown:
        raise AdaptationError(f"adaptation operator {name} has no field(s) {sorted(unknown)}; fields: {sorted(fields)}")
    return cls(**cfg)


def _settings(operator: object) -> dict[str, Any]:
    """An operator's fields, as ``make_operator`` takes them; no ``span`` when it perturbs every parameter."""
    d = dataclasses.asdict(operator)  # type: ignore[call-overload]
    span = d.pop("span", None)
    return d if span is None else {**d, "span": list(span)}


def _check_positive(obj: object, names: tuple[str, ...]) -> None:
    for n in names:
        if not getattr(obj, n) > 0:
            raise AdaptationError(f"adaptation {n} must be > 0, got {getattr(obj, n)!r}")
