"""The running observation normalizer: split-invariant merging, frozen snapshots and clipping."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from metactl.controllers import NormalizerSnapshot, RunningNormalizer
from metactl.controllers.normalizer import CLIP


def data() -> np.ndarray:
    """1000 observations [1000, 3] with different means and spreads per dimension."""
    rng = np.random.default_rng(0)
    return rng.normal(loc=(3.0, -1.0, 0.5), scale=(2.0, 0.1, 5.0), size=(1000, 3))


def merged(x: np.ndarray, cuts: list[int]) -> RunningNormalizer:
    """Merge the batches x[cuts[i]:cuts[i+1]] given as (count, sum, sum of squares), as rollouts report them."""
    norm = RunningNormalizer.empty(x.shape[1])
    bounds = [0, *cuts, len(x)]
    for a, b in itertools.pairwise(bounds):
        batch = x[a:b]
        norm = norm.update(len(batch), batch.sum(axis=0), (batch**2).sum(axis=0))
    return norm


@pytest.mark.parametrize(
    "cuts",
    [[], [500], [1, 2, 3], [10, 10, 999], list(range(50, 1000, 50)), sorted(np.random.default_rng(1).choice(999, 37))],
)
def test_merging_any_split_equals_the_statistics_of_all_data(cuts: list[int]) -> None:
    x = data()
    norm = merged(x, [int(c) for c in cuts])
    assert norm.count == len(x)
    np.testing.assert_allclose(norm.mean, x.mean(axis=0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(norm.m2 / norm.count, x.var(axis=0), rtol=1e-10, atol=1e-10)
    snap = norm.snapshot()
    np.testing.assert_allclose(snap.std, x.std(axis=0), rtol=1e-10)


def test_the_order_of_batches_does_not_matter() -> None:
    x = data()
    forward, backward = merged(x, [300, 700]), merged(x[::-1].copy(), [300, 700])
    np.testing.assert_allclose(forward.mean, backward.mean, rtol=1e-12)
    np.testing.assert_allclose(forward.m2, backward.m2, rtol=1e-10)


def test_an_empty_batch_changes_nothing() -> None:
    norm = merged(data(), [400])
    assert norm.update(0, np.zeros(3), np.zeros(3)) is norm


@pytest.mark.parametrize("value", [0.0, 5.0, -2.5, 1000.0])
def test_constant_dimensions_get_unit_std(value: float) -> None:
    x = data()
    x[:, 1] = value
    snap = merged(x, [250, 600]).snapshot()
    assert snap.std[1] == 1.0
    assert snap.mean[1] == pytest.approx(value)
    # A constant dimension normalizes to ~0 instead of blowing up.
    assert abs(snap.normalize(x[:5])[:, 1]).max() < 1e-9


def test_constant_dimension_of_large_magnitude_gets_unit_std() -> None:
    x = np.full((1000, 1), 123.456)
    assert merged(x, []).snapshot().std[0] == 1.0


def test_fewer_than_two_observations_give_unit_std() -> None:
    snap = RunningNormalizer.empty(2).update(1, np.array([3.0, -4.0]), np.array([9.0, 16.0])).snapshot()
    np.testing.assert_array_equal(snap.mean, [3.0, -4.0])
    np.testing.assert_array_equal(snap.std, [1.0, 1.0])


def test_normalized_observations_are_clipped_to_ten() -> None:
    assert CLIP == 10.0
    snap = NormalizerSnapshot(mean=np.array([1.0, 1.0, 1.0]), std=np.array([2.0, 2.0, 2.0]))
    out = snap.normalize(np.array([[1e9, -1e9, 5.0]]))
    # (5 - 1) / 2 = 2 is untouched; the others saturate at +-10.
    np.testing.assert_array_equal(out, [[10.0, -10.0, 2.0]])
    identity = NormalizerSnapshot.identity(3)
    np.testing.assert_array_equal(identity.normalize(np.array([0.5, -30.0, 9.0])), [0.5, -10.0, 9.0])


def test_snapshot_is_frozen_against_later_updates() -> None:
    norm = merged(data(), [])
    snap = norm.snapshot()
    mean_before = snap.mean.copy()
    norm.update(10, np.full(3, 1e3), np.full(3, 1e6))
    np.testing.assert_array_equal(snap.mean, mean_before)
