"""Export parity: the ONNX graph run by onnxruntime equals the numpy policy (fast path vs reference)."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import onnx
import pytest

from metactl import sim
from metactl.controllers import load_policy
from metactl.controllers.normalizer import CLIP
from metactl.deploy import BundleError, PolicyBundle
from metactl.deploy.export import export_bundle

TOL = 1e-5
"""float32 graph vs float64 numpy: errors are ~1e-7 per unit of pre-activation; actions lie in [-1, 1]."""


@pytest.fixture(scope="module", params=["linear", "mlp"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(numpy policy, extra, bundle dir) for a halfcheetah_fb policy of each kind."""
    path = request.getfixturevalue(f"hc_{request.param}_policy_path")
    policy, extra = load_policy(path)
    return policy, extra, export_bundle(path, str(tmp_path_factory.mktemp(f"export_{request.param}")))


def test_model_passes_full_onnx_check(exported) -> None:
    _, _, out = exported
    model = onnx.load(os.path.join(out, "policy.onnx"))
    onnx.checker.check_model(model, full_check=True)
    inputs = {i.name for i in model.graph.input}
    initializers = {t.name for t in model.graph.initializer}
    assert "params" in inputs & initializers  # an overridable initializer
    assert model.graph.output[0].name == "action"


def test_metadata_describes_the_policy(exported) -> None:
    policy, extra, out = exported
    meta = json.load(open(os.path.join(out, "metadata.json")))
    assert meta["format"] == "metactl-bundle" and meta["format_version"] == 2
    family = sim.make_family("halfcheetah_fb")
    assert meta["observation_names"] == extra["observation_names"] == list(family.observation_names)
    assert meta["action_names"] == extra["action_names"]
    assert (meta["obs_dim"], meta["act_dim"], meta["num_params"]) == (17, 6, policy.spec.num_params)
    assert meta["policy"]["kind"] == policy.spec.kind
    assert meta["control_period"] == pytest.approx(0.05) and meta["horizon"] == 20
    np.testing.assert_array_equal(meta["normalizer"]["mean"], policy.normalizer.mean)
    np.testing.assert_array_equal(meta["normalizer"]["std"], policy.normalizer.std)
    assert meta["adaptation"] == extra["adaptation"] and meta["train_config"] == extra["train_config"]
    digest = hashlib.sha256(open(os.path.join(out, "policy.onnx"), "rb").read()).hexdigest()
    assert meta["files"] == {"policy.onnx": digest}


def test_trained_params_come_from_the_initializer(exported) -> None:
    policy, _, out = exported
    bundle = PolicyBundle.load(out)
    assert bundle.params.dtype == np.float64
    np.testing.assert_array_equal(bundle.params, policy.params.astype(np.float32))


@pytest.mark.parametrize("feed", ["default", "perturbed"])
def test_random_observations_match_numpy(exported, feed: str) -> None:
    policy, _, out = exported
    bundle = PolicyBundle.load(out)
    rng = np.random.default_rng(0)
    mean, std = policy.normalizer.mean, policy.normalizer.std
    typical = mean + std * rng.standard_normal((64, 17))
    huge = mean + std * 50.0 * rng.standard_normal((64, 17))  # |z| ~ 50 > CLIP: the clip is exercised
    obs = np.vstack([typical, huge])
    assert np.abs(policy.normalizer.normalize(huge)).max() == CLIP
    params = None if feed == "default" else policy.params + 0.1 * rng.standard_normal(policy.params.size)
    expected = policy.act_batch(obs, params)
    np.testing.assert_allclose(bundle.act(obs, params), expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("feed", ["default", "perturbed"])
def test_rollout_observations_match_numpy(exported, feed: str) -> None:
    policy, _, out = exported
    bundle = PolicyBundle.load(out)
    family = sim.make_family("halfcheetah_fb")
    batch = family.make_batch(family.test_tasks())
    result = sim.rollout(batch, policy.act_batch, seeds=[1, 2, 3, 4], horizon=20, record=True)
    obs = result.observations.reshape(-1, family.obs_dim)  # [T * N, obs_dim] = [80, 17]
    noise = np.random.default_rng(1).standard_normal(policy.params.size)
    params = None if feed == "default" else policy.params + 0.1 * noise
    np.testing.assert_allclose(bundle.act(obs, params), policy.act_batch(obs, params), atol=TOL, rtol=0)


def test_single_observation_and_shape_checks(exported) -> None:
    policy, _, out = exported
    bundle = PolicyBundle.load(out)
    obs = np.linspace(-1, 1, 17)
    action = bundle.act(obs)
    assert action.shape == (6,) and action.dtype == np.float64
    np.testing.assert_allclose(action, policy.act(obs), atol=TOL, rtol=0)
    with pytest.raises(ValueError, match="obs must have shape"):
        bundle.act(np.zeros(3))
    with pytest.raises(ValueError, match="params must have shape"):
        bundle.act(obs, np.zeros(3))


def test_four_corners_linear_parity(fc_policy_path: str, fc_bundle: str) -> None:
    policy, _ = load_policy(fc_policy_path)
    bundle = PolicyBundle.load(fc_bundle)
    obs = np.random.default_rng(2).uniform(-5, 5, size=(100, 2))
    np.testing.assert_allclose(bundle.act(obs), policy.act_batch(obs), atol=TOL, rtol=0)


def test_missing_policy_file(tmp_path) -> None:
    with pytest.raises(BundleError, match="not found") as e:
        export_bundle(str(tmp_path / "nope.npz"), str(tmp_path / "out"))
    assert "\n" not in str(e.value)


def test_export_never_writes_over_other_outputs(tiny_run_dir, tmp_path) -> None:
    """``export --out`` into a training run's folder used to replace its summary.json: now refused, nothing touched."""
    from metactl.deploy import BundleError

    before = {name: open(os.path.join(tiny_run_dir, name), "rb").read() for name in ("summary.json", "config.json")}
    with pytest.raises(BundleError, match="not empty and holds no bundle"):
        export_bundle(os.path.join(tiny_run_dir, "policy.npz"), tiny_run_dir)
    assert not os.path.exists(os.path.join(tiny_run_dir, "policy.onnx"))
    for name, data in before.items():
        assert open(os.path.join(tiny_run_dir, name), "rb").read() == data


def test_re_export_clears_an_earlier_bundle(mb_models, tmp_path) -> None:
    """A model bundle re-exported as a policy bundle into the same folder keeps none of the old graphs."""
    from metactl.deploy.model_export import export_model_bundle

    out = str(tmp_path / "bundle")
    export_model_bundle(mb_models["grbal"], out)
    assert os.path.isfile(os.path.join(out, "adapt.onnx"))
    export_model_bundle(mb_models["rebal"], out)
    assert sorted(os.listdir(out)) == ["dynamics.onnx", "metadata.json", "recurrent_step.onnx"]
