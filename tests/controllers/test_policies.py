"""Policies over a flat parameter vector: sizes, layer views, batched forms and the action bounds."""

from __future__ import annotations

import numpy as np
import pytest

from metactl.controllers import NormalizerSnapshot, Policy, PolicyError, PolicySpec

LOW, HIGH = (0.0, -2.0, -1.0), (1.0, 4.0, 1.0)


def spec(kind: str = "linear", hidden: tuple[int, ...] = ()) -> PolicySpec:
    return PolicySpec(kind, obs_dim=5, act_dim=3, action_low=LOW, action_high=HIGH, hidden=hidden)


def test_num_params_counts_weights_and_biases() -> None:
    assert spec().num_params == 5 * 3 + 3
    # 5 -> 8 -> 4 -> 3: (5*8 + 8) + (8*4 + 4) + (4*3 + 3) = 48 + 36 + 15
    assert spec("mlp", (8, 4)).num_params == 99
    halfcheetah_mlp = PolicySpec("mlp", 17, 6, (-1.0,) * 6, (1.0,) * 6, (32, 32))
    assert halfcheetah_mlp.num_params == (17 * 32 + 32) + (32 * 32 + 32) + (32 * 6 + 6)


def test_unflatten_views_the_flat_vector_layer_by_layer() -> None:
    s = spec("mlp", (4,))
    params = np.arange(s.num_params, dtype=np.float64)
    (w1, b1), (w2, b2) = s.unflatten(params)
    assert (w1.shape, b1.shape, w2.shape, b2.shape) == ((5, 4), (4,), (4, 3), (3,))
    np.testing.assert_array_equal(np.concatenate([w1.ravel(), b1, w2.ravel(), b2]), params)
    w1[0, 0] = -1.0  # views, not copies: ES perturbs the flat vector
    assert params[0] == -1.0
    rows = np.stack([params, params + 1])
    (w1_rows, _), _ = s.unflatten(rows)
    assert w1_rows.shape == (2, 5, 4)
    with pytest.raises(PolicyError, match=f"expected {s.num_params}"):
        s.unflatten(np.zeros(s.num_params + 1))


@pytest.mark.parametrize(("kind", "hidden"), [("linear", ()), ("mlp", (4,)), ("mlp", (4, 2))])
def test_bias_span_locates_each_layers_biases(kind: str, hidden: tuple[int, ...]) -> None:
    s = spec(kind, hidden)
    params = np.arange(s.num_params, dtype=np.float64)
    for layer, (_, b) in enumerate(s.unflatten(params)):
        start, stop = s.bias_span(layer)
        np.testing.assert_array_equal(params[start:stop], b)
    with pytest.raises(PolicyError, match="layer"):
        s.bias_span(len(hidden) + 1)


@pytest.mark.parametrize(("kind", "hidden"), [("linear", ()), ("mlp", (4,)), ("mlp", (4, 2))])
def test_context_inputs_are_parameters_fed_beside_the_observation(kind: str, hidden: tuple[int, ...]) -> None:
    """With ``context`` K the first layer sees [obs, z], z the vector's last K entries: forward equals that
    concatenation, shared or per row, and only the context rows and values are new parameters."""
    s = PolicySpec(kind, 5, 3, LOW, HIGH, hidden, context=2)
    assert s.num_params == spec(kind, hidden).num_params + 2 * s.layer_sizes[1] + 2
    rng = np.random.default_rng(0)
    params, obs = rng.standard_normal(s.num_params), rng.standard_normal((6, 5))
    z = params[slice(*s.context_span())]
    np.testing.assert_array_equal(z, params[-2:])
    x = np.concatenate([obs, np.tile(z, (6, 1))], axis=1)
    for w, b in s.unflatten(params):  # the first W has obs_dim + 2 rows
        x = np.tanh(x @ w + b)
    want = np.clip(np.asarray(LOW) + 0.5 * (x + 1) * (np.asarray(HIGH) - np.asarray(LOW)), LOW, HIGH)
    np.testing.assert_allclose(s.forward(params, obs), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.forward(np.tile(params, (6, 1)), obs), want, rtol=0, atol=1e-12)
    wide = PolicySpec(kind, 5, 3, LOW, HIGH, (64,) if hidden else (), context=40)
    init = wide.init_params(np.random.default_rng(1))
    context_rows = wide.unflatten(init)[0][0][5:]
    assert np.all(init[-40:] == 0) and 0.75 < context_rows.std() < 1.25  # z from 0; weights at unit scale
    assert PolicySpec.from_dict(s.to_dict()) == s and "context" not in spec(kind, hidden).to_dict()
    with pytest.raises(PolicyError, match="no context"):
        spec(kind, hidden).context_span()
    with pytest.raises(PolicyError, match="context must be"):
        PolicySpec(kind, 5, 3, LOW, HIGH, hidden, context=-1)


@pytest.mark.parametrize(("kind", "hidden"), [("linear", ()), ("mlp", (16, 8))])
def test_shared_params_equal_the_same_params_on_every_row(kind: str, hidden: tuple[int, ...]) -> None:
    s = spec(kind, hidden)
    rng = np.random.default_rng(0)
    params, obs = rng.standard_normal(s.num_params), rng.standard_normal((32, 5))
    shared = s.forward(params, obs)
    per_row = s.forward(np.tile(params, (32, 1)), obs)
    assert shared.shape == per_row.shape == (32, 3)
    # [P] uses a matrix product, [N, P] an einsum: equal up to summation order (measured max difference ~1e-15).
    np.testing.assert_allclose(shared, per_row, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("kind", "hidden"), [("linear", ()), ("mlp", (16,))])
def test_per_row_params_equal_one_forward_per_row(kind: str, hidden: tuple[int, ...]) -> None:
    s = spec(kind, hidden)
    rng = np.random.default_rng(1)
    params, obs = rng.standard_normal((6, s.num_params)), rng.standard_normal((6, 5))
    looped = np.concatenate([s.forward(params[i], obs[i : i + 1]) for i in range(6)])
    np.testing.assert_allclose(s.forward(params, obs), looped, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("kind", "hidden"), [("linear", ()), ("mlp", (16, 16))])
@pytest.mark.parametrize("scale", [1.0, 1e3, 1e150])
def test_actions_stay_within_bounds_for_huge_obs_and_params(kind: str, hidden: tuple[int, ...], scale: float) -> None:
    s = spec(kind, hidden)
    rng = np.random.default_rng(2)
    params = scale * rng.standard_normal((64, s.num_params))
    obs = scale * rng.standard_normal((64, 5))
    # scale 1e150: products ~1e300 stay finite, tanh saturates at +-1 and the mapped action hits the bounds.
    actions = s.forward(params, obs)
    assert np.isfinite(actions).all()
    assert (actions >= np.array(LOW)).all()
    assert (actions <= np.array(HIGH)).all()


@pytest.mark.parametrize(("kind", "hidden"), [("linear", ()), ("mlp", (16, 16))])
def test_a_nan_observation_gives_nan_actions_and_infinities_are_clipped(kind: str, hidden: tuple[int, ...]) -> None:
    """The one non-finite behaviour (module doc): NaN in -> NaN out; +-inf is clipped by the normalizer."""
    s = spec(kind, hidden)
    params = np.random.default_rng(3).standard_normal(s.num_params)
    norm = NormalizerSnapshot(np.zeros(5), np.ones(5))
    obs = np.array([[np.nan, 0, 0, 0, 0], [np.inf, -np.inf, 1e30, -1e30, 0], [10, -10, 10, -10, 0]])
    actions = s.forward(params, norm.normalize(obs))
    assert np.isnan(actions[0]).all()
    np.testing.assert_array_equal(actions[1], actions[2])  # +-inf and +-1e30 are +-CLIP after normalizing


def test_zero_linear_policy_gives_the_middle_of_the_range() -> None:
    s = spec()
    params = s.init_params(np.random.default_rng(0))
    np.testing.assert_array_equal(params, np.zeros(s.num_params))
    # tanh(0) = 0 maps to low + (high - low) / 2: (0.5, 1.0, 0.0)
    np.testing.assert_array_equal(s.forward(params, np.ones((4, 5))), np.tile([0.5, 1.0, 0.0], (4, 1)))


def test_mlp_init_is_seeded_scaled_gaussian_weights_and_zero_biases() -> None:
    s = spec("mlp", (64,))
    a, b = s.init_params(np.random.default_rng(3)), s.init_params(np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    (w1, b1), (w2, b2) = s.unflatten(a)
    assert not b1.any() and not b2.any()
    # Weights ~ N(0, 1/fan_in). A sample std of n draws has relative standard error 1/sqrt(2n): 4% for the 5 * 64
    # first-layer weights, 5% for the 64 * 3 second-layer ones; allow 4 standard errors.
    assert w1.std() == pytest.approx(1 / np.sqrt(5), rel=0.16)
    assert w2.std() == pytest.approx(1 / np.sqrt(64), rel=0.2)


def test_policy_normalizes_raw_observations_before_the_network() -> None:
    s = spec()
    rng = np.random.default_rng(4)
    params = rng.standard_normal(s.num_params)
    norm = NormalizerSnapshot(mean=rng.standard_normal(5), std=rng.uniform(0.5, 2.0, 5))
    policy = Policy(s, params, norm)
    obs = rng.standard_normal((3, 5))
    np.testing.assert_array_equal(policy.act_batch(obs), s.forward(params, norm.normalize(obs)))
    np.testing.assert_array_equal(policy.act(obs[1]), policy.act_batch(obs)[1])
    # A sensor reading of 1e300 is clipped by the normalizer to +-10 std: the action stays bounded.
    wild = policy.act(np.array([1e300, -1e300, 0.0, 1e300, -1e300]))
    assert ((wild >= LOW) & (wild <= HIGH)).all()
    other = policy.with_params(np.zeros(s.num_params))
    np.testing.assert_array_equal(other.act(obs[0]), [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(policy.params, params)  # with_params copies, never mutates


def test_spec_validation_and_dict_round_trip() -> None:
    with pytest.raises(PolicyError, match="unknown policy kind"):
        spec("transformer")
    with pytest.raises(PolicyError, match="hidden"):
        spec("mlp", ())
    with pytest.raises(PolicyError, match="act_dim"):
        PolicySpec("linear", 5, 3, (0.0,), (1.0,))
    assert spec("linear", (8,)).hidden == ()  # a linear policy ignores hidden sizes
    for s in (spec(), spec("mlp", (8, 4))):
        assert PolicySpec.from_dict(s.to_dict()) == s
