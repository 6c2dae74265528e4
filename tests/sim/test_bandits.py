"""RL²'s small-scale task families (Duan et al. 2016, Sec. 3): Bernoulli bandits and random tabular MDPs."""

from __future__ import annotations

import numpy as np
import pytest

from metactl.sim.bandits import BanditBatch, sample_bandits
from metactl.sim.tabular_mdp import MDPBatch, MDPs, dirichlet, optimal_values, sample_mdps


def test_bandit_prior_and_rewards() -> None:
    probs = sample_bandits(np.random.default_rng(0), 2000, 5)
    assert probs.shape == (2000, 5) and probs.min() >= 0 and probs.max() <= 1
    assert abs(probs.mean() - 0.5) < 0.01  # U[0, 1]: mean 1/2, s.e. sqrt(1/12 / 10000) = 0.003
    env = BanditBatch(np.array([[0.2, 0.9]] * 20_000), np.random.default_rng(1))
    obs, reward, done = env.step(np.ones(20_000, dtype=int))
    assert done.all() and (obs == 1).all() and set(np.unique(reward)) <= {0.0, 1.0}
    assert abs(reward.mean() - 0.9) < 4 * np.sqrt(0.9 * 0.1 / 20_000)  # Bernoulli(0.9), 4 standard errors
    assert abs(env.pull(np.zeros(20_000, dtype=int)).mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 20_000)
    with pytest.raises(ValueError):
        sample_bandits(np.random.default_rng(0), 3, 1)


def test_mdp_prior_rows_are_distributions() -> None:
    mdps = sample_mdps(np.random.default_rng(0), 500)
    assert mdps.transitions.shape == (500, 10, 5, 10) and mdps.shape == (500, 10, 5)
    np.testing.assert_allclose(mdps.transitions.sum(-1), 1.0, atol=1e-12)
    # Dirichlet(1, ..., 1) over 10 states: each entry has mean 1/10; mean rewards ~ N(1, 1).
    assert abs(mdps.transitions.mean() - 0.1) < 1e-3
    assert abs(mdps.mean_rewards.mean() - 1.0) < 0.03 and abs(mdps.mean_rewards.std() - 1.0) < 0.03
    alpha = np.array([[2.0, 1.0, 1.0]] * 40_000)
    assert np.allclose(dirichlet(np.random.default_rng(2), alpha).mean(0), [0.5, 0.25, 0.25], atol=0.01)


def test_mdp_episodes_start_in_state_zero_and_follow_p() -> None:
    b = 20_000
    p = np.zeros((1, 2, 2, 2))
    p[0, 0, 0] = [0.3, 0.7]
    p[0, 0, 1] = [1.0, 0.0]
    p[0, 1] = [0.5, 0.5]
    mu = np.array([[[2.0, -1.0], [0.0, 0.0]]])
    env = MDPBatch(MDPs(np.repeat(p, b, 0), np.repeat(mu, b, 0)), np.random.default_rng(3), episode_len=2)
    obs = env.reset()
    assert (obs[:, 0] == 1).all()
    obs, reward, done = env.step(np.zeros(b, dtype=int))
    assert not done.any() and abs(obs[:, 1].mean() - 0.7) < 0.015  # P(s'=1 | 0, 0) = 0.7, s.e. 0.003
    assert abs(reward.mean() - 2.0) < 0.03  # N(2, 1), s.e. 0.007
    obs, _, done = env.step(np.zeros(b, dtype=int))
    assert done.all() and (obs[:, 0] == 1).all()  # the episode ended: the next one starts in state 0
    assert 0.4 < env.last_state.mean() < 0.6  # ... while last_state keeps where the step went


def test_optimal_values_by_hand() -> None:
    # Two states, two actions, deterministic: a0 stays (reward 1), a1 moves to state 1 (reward 0), where both
    # actions give 3 and stay. Horizon 2 from state 0: move then 3 (= 3) beats stay twice (= 2).
    p = np.zeros((1, 2, 2, 2))
    p[0, 0, 0, 0] = p[0, 0, 1, 1] = p[0, 1, :, 1] = 1.0
    q = optimal_values(MDPs(p, np.array([[[1.0, 0.0], [3.0, 3.0]]])), 2)
    np.testing.assert_allclose(q[0, 0, 0], [1 + 1, 0 + 3])
    np.testing.assert_allclose(q[1, 0, 0], [1, 0])
