"""The outer ES step: z-scored (ES-MAML) and ARS V2-t forms, with and without top-b selection."""

from __future__ import annotations

import numpy as np

from metactl import controllers, sim, train
from metactl.train.es_maml import es_gradient


def config(**kw):  # type: ignore[no-untyped-def]
    return train.TrainConfig(family="four_corners", directions=3, sigma=0.5, **kw)


def test_zscore_form_by_hand() -> None:
    values = np.array([3.0, 1.0, 2.0, 0.0, 1.0, 2.0])  # r+ = (3, 1, 2), r- = (0, 1, 2)
    eps = np.eye(3)
    z = (values - values.mean()) / values.std()
    # 1/(2 n sigma) (z+ - z-) = (z+ - z-) / 3
    np.testing.assert_allclose(es_gradient(values, eps, config()), (z[:3] - z[3:]) / 3.0)


def test_ars_form_keeps_the_top_b_pairs_and_divides_by_their_spread() -> None:
    values = np.array([3.0, 1.0, 2.0, 0.0, 1.0, 5.0])  # max per pair: 3, 1, 5 -> keep pairs 0 and 2
    eps = np.eye(3)
    kept = np.array([3.0, 2.0, 0.0, 5.0])  # r+ and r- of the kept pairs
    expected = np.array([3.0 - 0.0, 0.0, 2.0 - 5.0]) / (2 * kept.std())
    got = es_gradient(values, eps, config(top_directions=2, return_normalization="ars"))
    np.testing.assert_allclose(got, expected)


def test_identity_adaptation_makes_plain_es() -> None:
    op = controllers.make_operator({"name": "none"})
    assert op.schedule() == ()
    params = np.arange(4.0)
    state = op.start(params, seed=1)
    np.testing.assert_array_equal(state.params, params)
    assert op.ask(state).shape == (0, 4)


def test_the_benchmark_family_uses_gymnasiums_halfcheetah_reward() -> None:
    run = sim.make_family("halfcheetah_run")
    assert "halfcheetah_run" not in sim.FAMILIES  # a benchmark, not a meta-learning family
    actions = np.full((1, 6), 0.5)  # |a|^2 = 1.5
    reward, terminated = run.reward(np.array([2.0]), actions, np.zeros((1, 17)), np.ones(1))
    np.testing.assert_allclose(reward, [2.0 - 0.1 * 1.5])  # v_x - 0.1 |a|^2 (Gymnasium HalfCheetah-v5)
    assert not terminated.any() and run.horizon == 1000
