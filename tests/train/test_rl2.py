"""RL² (Duan et al. 2016): GAE, the hidden state's life cycle, PPO's determinism, a tiny learning test, and the
baselines' mathematics (Gittins index, UCB1 / Thompson vs random, PSRL's posterior)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from metactl.sim.bandits import sample_bandits
from metactl.sim.tabular_mdp import sample_mdps
from metactl.train import rl2_baselines as bl
from metactl.train.rl2 import evaluate, load_policy, make_policy, save_policy, train_rl2
from metactl.train.rl2_config import RL2Config, check, preset
from metactl.train.rl2_envs import make_trials
from metactl.train.rl2_ppo import collect, gae

torch.set_num_threads(1)
TINY = RL2Config(family="bandit", episodes=5, arms=3, iterations=3, trials=8, hidden=16, eval_trials=20)


def test_gae_matches_a_hand_computation() -> None:
    r = torch.tensor([[1.0], [0.0], [2.0]])
    v = torch.tensor([[0.5], [0.2], [0.1]])
    adv, ret = gae(r, v, gamma=0.9, lam=0.5)
    # delta_2 = 2 - 0.1 = 1.9 (V_3 = 0); delta_1 = 0 + 0.9 * 0.1 - 0.2 = -0.11; delta_0 = 1 + 0.9 * 0.2 - 0.5 = 0.68
    # A_2 = 1.9; A_1 = -0.11 + 0.45 * 1.9 = 0.745; A_0 = 0.68 + 0.45 * 0.745 = 1.01525
    np.testing.assert_allclose(adv[:, 0], [1.01525, 0.745, 1.9], atol=1e-6)
    np.testing.assert_allclose(ret[:, 0], [1.51525, 0.945, 2.0], atol=1e-6)
    # lambda = 1: A_t = discounted return-to-go - V_t (Monte Carlo): G = [1 + 0.81 * 2, 0.9 * 2, 2]
    adv1, _ = gae(r, v, gamma=0.9, lam=1.0)
    np.testing.assert_allclose(adv1[:, 0], [2.62 - 0.5, 1.8 - 0.2, 2.0 - 0.1], atol=1e-6)


def test_hidden_state_carries_over_episodes_and_resets_between_trials() -> None:
    policy = make_policy(TINY)
    env = make_trials(TINY, np.random.default_rng(0), 6)
    batch = collect(policy, env, episodes=5, gen=torch.Generator().manual_seed(0))
    with torch.no_grad():  # one pass over the whole trial from the zero state == the stepwise rollout
        _, values, _ = policy(batch.inputs, policy.initial_state(6))
        np.testing.assert_allclose(values.numpy(), batch.values.numpy(), atol=1e-6)
        # The carried state matters: episode 3 from a zeroed state is not what the policy saw.
        _, fresh, _ = policy(batch.inputs[2:], policy.initial_state(6))
    assert not torch.allclose(fresh[0], batch.values[2], atol=1e-4)
    # Every trial starts from the zero state: a second trial's first step (same first input) repeats the first's.
    again = collect(policy, make_trials(TINY, np.random.default_rng(9), 6), 5, torch.Generator().manual_seed(5))
    np.testing.assert_allclose(again.values[0].numpy(), batch.values[0].numpy(), atol=1e-7)
    # The first step's values agree across the 6 trials to rounding (a SIMD kernel's tail rows can differ by an ulp);
    # the second step's differ, each trial having seen its own first reward.
    assert np.ptp(batch.values[0].numpy()) < 1e-6 and np.ptp(batch.values[1].numpy()) > 1e-4


def test_same_seed_same_run_and_save_load_roundtrip(tmp_path) -> None:
    a, b = train_rl2(TINY, str(tmp_path / "a")), train_rl2(TINY)
    c = train_rl2(dataclasses.replace(TINY, seed=1))
    for k, v in a.policy.arrays().items():
        np.testing.assert_array_equal(v, b.policy.arrays()[k])
    assert a.summary["heldout_trial_reward_mean"] == b.summary["heldout_trial_reward_mean"]
    assert not np.array_equal(a.policy.arrays()["gru.weight_ih_l0"], c.policy.arrays()["gru.weight_ih_l0"])
    loaded, config = load_policy(a.model_path)
    assert config == TINY
    np.testing.assert_array_equal(evaluate(loaded, config, 10, 3), evaluate(a.policy, TINY, 10, 3))
    save_policy(str(tmp_path / "again.npz"), loaded, config)


def test_rl2_learns_to_exploit_a_bandit_in_seconds() -> None:
    # 2 arms, 10 pulls: random earns 10 * 1/2 = 5; knowing the better arm, 10 * E[max(U1, U2)] = 6.67.
    config = RL2Config(family="bandit", episodes=10, arms=2, iterations=150, trials=64, hidden=32, eval_trials=400)
    result = train_rl2(config)
    probs = sample_bandits(np.random.default_rng(11), 400, 2)
    random = bl.run_bandit(bl.BANDIT_RULES["random"], probs, 10, np.random.default_rng(12))
    rl2 = evaluate(result.policy, config, 400, 11, tasks=probs)
    assert rl2.mean() > random.mean() + 0.4, (rl2.mean(), random.mean())  # s.e. of the difference ~0.15


def test_ucb1_and_thompson_beat_random_with_enough_pulls() -> None:
    probs = sample_bandits(np.random.default_rng(0), 300, 5)
    totals = {name: bl.run_bandit(rule, probs, 200, np.random.default_rng(1)) for name, rule in bl.BANDIT_RULES.items()}
    se = totals["random"].std() / np.sqrt(300)
    # random earns 200 / 2 = 100 per trial; the best arm 200 * 5/6 = 167
    assert abs(totals["random"].mean() - 100) < 4 * se + 2
    for name in ("ucb1", "thompson", "greedy"):
        assert totals[name].mean() > totals["random"].mean() + 20, name
    assert totals["thompson"].mean() > totals["ucb1"].mean()  # UCB1's sqrt(2 ln t / n) explores much longer


def test_gittins_index_matches_the_published_table() -> None:
    table = bl.gittins_table(0.9, 4)
    # Gittins, Glazebrook & Weber (2011), Bernoulli/Beta(1, 1) at discount 0.9: index 0.7029.
    assert abs(table[0, 0] - 0.7029) < 2e-3
    assert table[1, 0] > table[0, 0] > table[0, 1]  # a success raises the index, a failure lowers it
    assert table[0, 0] > 0.5  # above the posterior mean: the value of information
    d = np.diag(np.fliplr(table[:3, :3]))  # states with 2 pulls: (0, 2), (1, 1), (2, 0)
    assert np.all(np.diff(d) > 0)


def test_psrl_posterior_update() -> None:
    post = bl.Posterior(1, 4, 2)
    for _ in range(2):
        post.update(np.array([0]), np.array([1]), np.array([2.0]), np.array([3]))
    mean = post.mean()
    # Dirichlet(1) + 2 counts on s' = 3: E[P] = (1 + 2) / (4 + 2) there, 1/6 elsewhere.
    np.testing.assert_allclose(mean.transitions[0, 0, 1], [1 / 6, 1 / 6, 1 / 6, 3 / 6])
    # N(1, 1) prior, unit noise, rewards 2, 2: posterior mean (1 + 4) / 3, variance 1 / 3.
    assert mean.mean_rewards[0, 0, 1] == pytest.approx(5 / 3)
    assert mean.mean_rewards[0, 1, 0] == pytest.approx(1.0)  # unvisited: the prior
    draws = np.array([post.sample(np.random.default_rng(i)).mean_rewards[0, 0, 1] for i in range(4000)])
    assert abs(draws.mean() - 5 / 3) < 0.04 and abs(draws.var() - 1 / 3) < 0.04


def test_mdp_baselines_order() -> None:
    mdps = sample_mdps(np.random.default_rng(0), 100)
    got = {m: bl.run_mdp(m, mdps, 10, np.random.default_rng(1)).mean() for m in bl.MDP_METHODS}
    assert abs(got["random"] - 100) < 10  # 10 episodes x 10 steps x E[mu] = 1
    assert got["psrl"] > got["random"] + 15 and got["greedy"] > got["random"] + 15
    with pytest.raises(ValueError, match="unknown MDP baseline"):
        bl.run_mdp("ucrl", mdps, 1, np.random.default_rng(0))


def test_config_check_names_the_field() -> None:
    with pytest.raises(ValueError, match="episodes"):
        check(RL2Config(episodes=0))
    with pytest.raises(ValueError, match="gamma"):
        check(RL2Config(gamma=1.5))
    with pytest.raises(ValueError, match="minibatches"):
        check(RL2Config(trials=2, minibatches=4))
    assert preset("halfcheetah_fb").episodes == 2 and preset("mdp").family == "mdp"
