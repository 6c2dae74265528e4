"""The baselines RL² is measured against (Duan et al. 2016, Tables 1 and 2), vectorized over B trials.

Bandits (Bernoulli arms, Beta(1, 1) priors where a posterior is used): random; greedy (the arm of highest
posterior mean); epsilon-greedy (greedy, a uniformly random arm with probability epsilon); UCB1 (Auer et al.
2002: each arm once, then mean + sqrt(2 ln t / n_i)); Thompson sampling (one Beta posterior draw per arm);
Gittins index. The Gittins index is Bayes-optimal for the *discounted infinite-horizon* problem, not for our n
pulls; we use the discount gamma = 1 - 1/n (effective horizon n) and compute the index table exactly up to a
truncation (calibration by a retirement reward, Gittins 1979, on a lambda grid with linear interpolation;
states beyond ``depth`` pulls are valued as if nothing more were learned).

MDPs (Dirichlet(1) transition and N(1, 1)-mean Gaussian reward priors, as the tasks are drawn): random; greedy
(every episode, the finite-horizon optimal policy of the posterior-mean MDP); epsilon-greedy (the same, a random
action with probability epsilon); PSRL (Osband et al. 2013: every episode, the optimal policy of one MDP drawn
from the posterior). Every random draw comes from the generator passed in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from metactl.sim.tabular_mdp import MDPBatch, MDPs, dirichlet, optimal_values

EPSILON = 0.1
"""epsilon of the epsilon-greedy baselines (not tuned)."""


def _argmax(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmax [B] of ``values`` [B, k] with ties broken uniformly at random."""
    noise = rng.uniform(size=values.shape)
    best = values >= values.max(axis=1, keepdims=True) - 1e-12
    return np.argmax(np.where(best, noise, -1.0), axis=1)


BanditRule = Callable[[np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray]
"""(successes [B, k], failures [B, k], step t, rng) -> arms [B]."""


def _random(s: np.ndarray, f: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, s.shape[1], size=s.shape[0])


def _greedy(s: np.ndarray, f: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    return _argmax((1 + s) / (2 + s + f), rng)


def _eps_greedy(s: np.ndarray, f: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    explore = rng.uniform(size=s.shape[0]) < EPSILON
    return np.where(explore, _random(s, f, t, rng), _greedy(s, f, t, rng))


def _ucb1(s: np.ndarray, f: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    n = s + f
    if t < s.shape[1]:  # every arm once, in order
        return np.full(s.shape[0], t)
    return _argmax(s / n + np.sqrt(2.0 * np.log(t) / n), rng)


def _thompson(s: np.ndarray, f: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    return _argmax(rng.beta(1 + s, 1 + f), rng)


def gittins_table(gamma: float, pulls: int, depth: int | None = None, grid: int = 513) -> np.ndarray:
    """Gittins indices G [pulls, pulls] of a Bernoulli arm with a Beta(1 + s, 1 + f) posterior, G[s, f] for
    s + f < pulls: the retirement reward per step lambda at which continuing and retiring are equally good.

    One backward induction over posterior states per lambda of a grid on [0, 1] (vectorized over the grid): a
    state's index is where continue - retire changes sign, interpolated linearly between grid points. States at
    ``depth`` pulls (default pulls + 100) are valued max(lambda, p) / (1 - gamma) (no further learning)."""
    depth = max(depth or pulls + 100, pulls)
    lam = np.linspace(0.0, 1.0, grid)[:, None]  # [G, 1]
    retire = lam / (1.0 - gamma)
    s = np.arange(depth + 1)
    v = np.maximum(retire, (1 + s[None]) / (2 + depth) / (1.0 - gamma))  # layer m = depth, [G, depth + 1]
    table = np.full((pulls, pulls), np.nan)
    for m in range(depth - 1, -1, -1):
        p = ((1 + np.arange(m + 1)) / (2 + m))[None]  # [1, m + 1]
        cont = p * (1.0 + gamma * v[:, 1 : m + 2]) + (1 - p) * gamma * v[:, : m + 1]
        adv = cont - retire  # decreasing in lambda
        v = np.maximum(retire, cont)
        if m < pulls:
            table_row = _crossing(adv, lam[:, 0])
            idx = np.arange(m + 1)
            table[idx, m - idx] = table_row
    return table


def _crossing(adv: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Per column of ``adv`` [G, n] (decreasing in the grid ``lam`` [G]), where it crosses zero."""
    neg = adv < 0
    first = np.where(neg.any(axis=0), neg.argmax(axis=0), len(lam) - 1)
    lo = np.maximum(first - 1, 0)
    cols = np.arange(adv.shape[1])
    a0, a1 = adv[lo, cols], adv[first, cols]
    w = np.where(a0 > a1, a0 / np.maximum(a0 - a1, 1e-300), 0.0)
    return lam[lo] + np.clip(w, 0.0, 1.0) * (lam[first] - lam[lo])


def gittins_rule(pulls: int) -> BanditRule:
    """The Gittins-index policy for a trial of ``pulls`` pulls (discount 1 - 1/pulls)."""
    table = gittins_table(1.0 - 1.0 / pulls, pulls)

    def rule(s: np.ndarray, f: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
        return _argmax(table[s.astype(np.int64), f.astype(np.int64)], rng)

    return rule


BANDIT_RULES: dict[str, BanditRule] = {"random": _random, "greedy": _greedy, "epsilon_greedy": _eps_greedy,
                                       "ucb1": _ucb1, "thompson": _thompson}  # fmt: skip
"""Bandit baselines by name (plus ``gittins``, built per trial length by ``gittins_rule``)."""


def run_bandit(rule: BanditRule, probs: np.ndarray, pulls: int, rng: np.random.Generator) -> np.ndarray:
    """Total reward per trial [B] of ``rule`` over ``pulls`` pulls of the bandits ``probs`` [B, k]."""
    b, k = probs.shape
    s, f, total = np.zeros((b, k)), np.zeros((b, k)), np.zeros(b)
    rows = np.arange(b)
    for t in range(pulls):
        arm = rule(s, f, t, rng)
        r = (rng.uniform(size=b) < probs[rows, arm]).astype(np.float64)
        s[rows, arm] += r
        f[rows, arm] += 1 - r
        total += r
    return total


class Posterior:
    """The conjugate posterior of B tabular MDPs: transition counts (Dirichlet(1) prior) and reward sums
    (N(1, 1) prior on the mean, unit observation noise)."""

    def __init__(self, b: int, s: int, a: int):
        self.counts = np.zeros((b, s, a, s))
        self.reward_sum = np.zeros((b, s, a))
        self.visits = np.zeros((b, s, a))

    def update(self, state: np.ndarray, action: np.ndarray, reward: np.ndarray, nxt: np.ndarray) -> None:
        rows = np.arange(len(state))
        self.counts[rows, state, action, nxt] += 1
        self.reward_sum[rows, state, action] += reward
        self.visits[rows, state, action] += 1

    def mean(self) -> MDPs:
        """The posterior-mean MDP: E[P] = (1 + N) / (S + sum N), E[mu] = (1 + sum r) / (1 + visits)."""
        alpha = 1.0 + self.counts
        return MDPs(alpha / alpha.sum(-1, keepdims=True), (1.0 + self.reward_sum) / (1.0 + self.visits))

    def sample(self, rng: np.random.Generator) -> MDPs:
        """One MDP per trial from the posterior (PSRL's draw)."""
        mean = (1.0 + self.reward_sum) / (1.0 + self.visits)
        mu = rng.normal(mean, 1.0 / np.sqrt(1.0 + self.visits))
        return MDPs(dirichlet(rng, 1.0 + self.counts), mu)


MDP_METHODS = ("random", "greedy", "epsilon_greedy", "psrl")


def run_mdp(method: str, mdps: MDPs, episodes: int, rng: np.random.Generator, episode_len: int = 10) -> np.ndarray:
    """Total reward per trial [B] of baseline ``method`` (one of ``MDP_METHODS``) over ``episodes`` episodes."""
    if method not in MDP_METHODS:
        raise ValueError(f"unknown MDP baseline {method!r}; choose one of {MDP_METHODS}")
    env = MDPBatch(mdps, rng, episode_len)
    b, s, a = mdps.shape
    post, total = Posterior(b, s, a), np.zeros(b)
    for _ in range(episodes):
        env.reset()
        if method != "random":
            q = optimal_values(post.sample(rng) if method == "psrl" else post.mean(), episode_len)
        for t in range(episode_len):
            state = env.state.copy()
            if method == "random":
                act = rng.integers(0, a, size=b)
            else:
                act = _argmax(q[t][np.arange(b), state], rng)
                if method == "epsilon_greedy":
                    act = np.where(rng.uniform(size=b) < EPSILON, rng.integers(0, a, size=b), act)
            _, r, _ = env.step(act)
            post.update(state, act, r, env.last_state)
            total += r
    return total
