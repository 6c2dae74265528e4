"""Fixed-parameter sessions: ``params`` folded into a constant (no ``onnx`` needed) gives the same actions as the
overridable graph, with nothing left to override, built between episodes and reused while the vector is the same.

"The same" is up to the last bit: with constant weights onnxruntime may fuse MatMul + Add or pick another kernel
for batch 1 (measured: at most 1 ulp, 1.2e-7), so comparisons use atol 1e-6, far inside the 1e-5 parity budget."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from metactl.deploy import PolicyBundle
from metactl.deploy import metadata as md
from metactl.deploy.fold import FoldError, fold_initializer
from metactl.deploy.graphs import session_options
from metactl.deploy.policy_bundle import FixedParamsController


@pytest.fixture(scope="module")
def hc_mlp_bundle(hc_mlp_policy_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from metactl.deploy.export import export_bundle

    return export_bundle(hc_mlp_policy_path, str(tmp_path_factory.mktemp("hc_mlp_bundle")))


def _graph(bundle_dir: str) -> bytes:
    with open(f"{bundle_dir}/{md.ONNX_FILE}", "rb") as f:
        return f.read()


@pytest.mark.parametrize("fixture", ["hc_bundle", "hc_mlp_bundle"])
def test_a_folded_graph_has_no_params_input_and_gives_the_same_actions(fixture, request) -> None:
    bundle_dir = request.getfixturevalue(fixture)
    bundle = PolicyBundle.load(bundle_dir)
    new = bundle.params + np.random.default_rng(0).standard_normal(bundle.num_params)
    folded = ort.InferenceSession(fold_initializer(_graph(bundle_dir), "params", new), session_options())
    assert [i.name for i in folded.get_inputs()] == ["obs"] and folded.get_overridable_initializers() == []
    obs = np.random.default_rng(1).standard_normal((500, bundle.obs_dim)).astype(np.float32) * 3
    obs[0, 2], obs[1, 4] = np.nan, np.inf
    (got,) = folded.run(["action"], {"obs": obs})
    want = bundle.act(obs, new).astype(np.float32)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)  # NaN where NaN
    fixed = bundle.fixed(new)
    np.testing.assert_allclose(np.vstack([fixed.act(o) for o in obs]), want, atol=1e-6, rtol=0)


def test_fixed_sessions_are_built_once_per_parameter_vector(hc_bundle: str) -> None:
    bundle = PolicyBundle.load(hc_bundle)
    first = bundle.fixed()
    assert bundle.fixed(bundle.params.copy()) is first and len(bundle.rebuild_seconds) == 1
    controller = FixedParamsController(bundle, bundle.params + 0.1)
    controller.reset()  # between episodes: the rebuild happens here, not in the first control step
    assert len(bundle.rebuild_seconds) == 2 and bundle.fixed(bundle.params + 0.1) is controller._policy
    obs = np.linspace(-1, 1, bundle.obs_dim)
    np.testing.assert_allclose(controller.act(obs, True), bundle.act(obs, bundle.params + 0.1), atol=1e-6, rtol=0)


def test_folding_refuses_what_it_cannot_fold(hc_bundle: str) -> None:
    with pytest.raises(FoldError, match="no initializer named 'weights'"):
        fold_initializer(_graph(hc_bundle), "weights", np.zeros(3))
    with pytest.raises(FoldError):
        fold_initializer(b"\x3a\xff\xff\xff", "params", np.zeros(3))  # a length running past the end
