"""save_policy / load_policy: an exact round trip of architecture, parameters, normalizer and extra JSON."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from metactl.controllers import NormalizerSnapshot, Policy, PolicySpec, load_policy, save_policy


def test_save_then_load_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    spec = PolicySpec("mlp", 4, 2, (-1.0, 0.0), (1.0, 3.0), (8, 8))
    policy = Policy(spec, rng.standard_normal(spec.num_params), NormalizerSnapshot(rng.normal(size=4), rng.random(4)))
    extra = {"family": "four_corners", "control_period": 0.1, "names": ["x", "y"], "nested": {"k": [1, 2.5]}}
    path = str(tmp_path / "policy.npz")
    save_policy(path, policy, extra)
    loaded, loaded_extra = load_policy(path)
    assert loaded.spec == spec
    np.testing.assert_array_equal(loaded.params, policy.params)
    np.testing.assert_array_equal(loaded.normalizer.mean, policy.normalizer.mean)
    np.testing.assert_array_equal(loaded.normalizer.std, policy.normalizer.std)
    assert loaded.params.dtype == np.float64
    assert loaded_extra == extra
    obs = rng.normal(size=(5, 4))
    np.testing.assert_array_equal(loaded.act_batch(obs), policy.act_batch(obs))
    # Written atomically: only the final file remains.
    assert os.listdir(tmp_path) == ["policy.npz"]


def test_saving_over_an_existing_policy_replaces_it(tmp_path: Path) -> None:
    spec = PolicySpec("linear", 2, 2, (-1.0, -1.0), (1.0, 1.0))
    path = str(tmp_path / "policy.npz")
    for value in (1.0, 2.0):
        save_policy(path, Policy(spec, np.full(spec.num_params, value), NormalizerSnapshot.identity(2)), {"v": value})
    loaded, extra = load_policy(path)
    np.testing.assert_array_equal(loaded.params, np.full(spec.num_params, 2.0))
    assert extra == {"v": 2.0}
