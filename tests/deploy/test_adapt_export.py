"""``adapt.onnx`` for every inner step vs torch, and every meta-learner x inner step from training to the robot."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from metactl.controllers.dynamics import DynamicsSpec, DynamicsStats, ForwardCost
from metactl.controllers.mpc import MPCController
from metactl.controllers.planners import make_planner
from metactl.controllers.serialization import load_dynamics_model, load_inner_params
from metactl.deploy import load_hardware_config, run_online
from metactl.deploy import metadata as md
from metactl.deploy.adapt_export import build_adapt_graph
from metactl.deploy.errors import BundleError
from metactl.deploy.graphs import session_options
from metactl.deploy.model_bundle import ModelBundle
from metactl.deploy.model_export import export_model_bundle
from metactl.train import dynamics_model as dm
from metactl.train.inner_steps import LSTMOptimizer, MetaSGD, adapt
from metactl.train.mb_config import MBConfig
from metactl.train.mb_train import train_model_based
from metactl.train.meta_settings import INNER_STEPS, LEARNED_INNER, META_LEARNERS
from metactl.train.torch_online import Adaptation, TorchOnlineModel

REL = 1e-5
D, A = 5, 2


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest error relative to the reference's largest magnitude."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def _session(graph) -> ort.InferenceSession:  # type: ignore[no-untyped-def]
    return ort.InferenceSession(graph.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


def _model(seed: int = 0):  # type: ignore[no-untyped-def]
    spec = DynamicsSpec("mlp", D, A, (16, 12))
    params = dm.to_numpy(dm.init_params(spec, torch.Generator().manual_seed(seed)))
    rng = np.random.default_rng(seed)
    stats = DynamicsStats(rng.normal(size=D), rng.uniform(0.5, 2, D), rng.normal(size=A), rng.uniform(0.5, 2, A),
                          0.1 * rng.normal(size=D), rng.uniform(0.05, 0.2, D))  # fmt: skip
    obs = rng.normal(size=(12, D)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(12, A)).astype(np.float32)
    nxt = (obs + 0.1 * rng.normal(size=obs.shape)).astype(np.float32)
    return spec, params, stats, (obs, act, nxt)


CASES = {
    "sgd": (md.AdaptStep(), None),
    "sgd_imaml_3_proximal": (md.AdaptStep(meta_learner="imaml", steps=3, proximal=0.5), None),
    "meta_sgd_2": (md.AdaptStep(inner_step="meta_sgd", steps=2), "meta_sgd"),
    "lstm_1": (md.AdaptStep(inner_step="lstm", lstm_hidden=6), "lstm"),
    "lstm_3": (md.AdaptStep(inner_step="lstm", steps=3, lstm_hidden=6), "lstm"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_exported_adaptation_step_matches_torch(case: str) -> None:
    """Every inner step, unrolled and proximal: ONNX (hand-written backward) vs torch autograd, at 1e-5; the LSTM
    optimizer's state output too."""
    step, kind = CASES[case]
    spec, params, stats, window = _model()
    lr, scale = 0.05, 0.05
    theta = dm.from_numpy(params)
    if kind == "meta_sgd":  # learned rates that differ per coordinate
        inner = MetaSGD(lr)
        phi = [a * torch.rand(a.shape, generator=torch.Generator().manual_seed(i)) * 2 for i, a in
               enumerate(inner.init(theta, torch.Generator()))]  # fmt: skip
    elif kind == "lstm":
        inner = LSTMOptimizer(step.lstm_hidden, scale)
        phi = inner.init(theta, torch.Generator().manual_seed(3))
    else:
        inner, phi = Adaptation.sgd(lr).inner, []
    graph = build_adapt_graph(spec, params, stats, lr, step, dm.to_numpy(phi), scale)
    sess = _session(graph)
    n = spec.num_params
    feed = {"w_obs": window[0], "w_act": window[1], "w_next": window[2]}
    feed |= {s: np.zeros((n, step.lstm_hidden), np.float32) for s in step.state_names()}
    names = [f"theta_{i:03d}_adapted" for i in range(len(params))] + [f"{s}_next" for s in step.state_names()]
    got = sess.run(names, feed)
    tstats = dm.TorchStats(stats)
    ref = adapt(lambda p, d: dm.mse(p, tstats, *d), theta, tuple(torch.tensor(x) for x in window), inner, phi,
                step.steps, proximal=step.proximal)  # fmt: skip
    want = ref.params + ref.state
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert _rel(g, w.detach().numpy()) < REL
    for g, p in zip(got[: len(params)], params, strict=True):  # the step itself moved the weights
        assert float(np.abs(g - p).max()) > 1e-5


def test_the_exported_step_is_overridable_and_refuses_a_recurrent_model() -> None:
    spec, params, stats, window = _model()
    step = md.AdaptStep(inner_step="meta_sgd")
    zeros = [np.zeros_like(p) for p in params]
    sess = _session(build_adapt_graph(spec, params, stats, 0.1, step, zeros))
    ones = {f"{md.ALPHA_PREFIX}{i:03d}": np.full_like(p, 0.1) for i, p in enumerate(params)}
    feed = {"w_obs": window[0], "w_act": window[1], "w_next": window[2]}
    for out, p in zip(sess.run(None, feed), params, strict=True):  # alpha = 0: the trained weights exactly
        np.testing.assert_array_equal(out, p)
    sgd = _session(build_adapt_graph(spec, params, stats, 0.1))
    for a, b in zip(sess.run(None, feed | ones), sgd.run(None, feed), strict=True):  # alpha = lr everywhere: SGD
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(Exception, match="MLP dynamics models only"):
        build_adapt_graph(DynamicsSpec("recurrent", D, A, (8,), 4), params, stats, 0.1)


TINY = {"family": "halfcheetah_disabled_joint", "iterations": 2, "rollouts": 2, "episode_steps": 40, "train_steps": 6,
        "samples": 12, "planning_horizon": 3, "eval_every": 0, "eval_steps": 10, "hidden": (16, 16), "meta_batch": 8,
        "lstm_hidden": 4}  # fmt: skip
COMBOS = [(m, i) for m in META_LEARNERS for i in INNER_STEPS if i == "sgd" or m in LEARNED_INNER]


@pytest.mark.parametrize(("learner", "inner"), COMBOS)
def test_every_meta_learner_and_inner_step_trains_exports_and_runs_on_the_simulated_robot(
    learner: str, inner: str, tmp_path, short_config
) -> None:
    """A tiny GrBAL run -> model bundle -> the robot runtime on the simulated damaged cheetah; the robot's
    ONNX controller picks the training-side torch controller's actions (same seed, same transitions)."""
    config = MBConfig(meta_learner=learner, inner_step=inner, **TINY)
    result = train_model_based(config, str(tmp_path / "run"), progress=False)
    bundle_dir = export_model_bundle(result.model_path, str(tmp_path / "bundle"))
    bundle = ModelBundle.load(bundle_dir)
    assert bundle.meta.adaptation.inner_step == inner and bundle.meta.adaptation.meta_learner == learner
    assert bundle.meta.adaptation.steps == config.inner_steps
    spec, params, stats, extra = load_dynamics_model(result.model_path)
    adaptation = Adaptation.from_record(extra["adaptation"], load_inner_params(result.model_path), config.inner_lr)
    torch_model = TorchOnlineModel("grbal", spec, params, stats, 1, extra["window"], config.inner_lr, adaptation)
    planner = make_planner(extra["planner"], np.asarray(extra["action_low"]), np.asarray(extra["action_high"]))
    train_side = MPCController(torch_model, planner, ForwardCost(extra["observation_names"], extra["reward_spec"]),
                               np.random.default_rng(5))  # fmt: skip
    robot = bundle.controller(seed=5)
    robot.reset()
    train_side.reset()
    from metactl.sim import make_family

    family = make_family(extra["family"])
    sim = family.make_batch(family.test_tasks()[:1])
    obs = sim.reset([3])[0]
    for _ in range(20):  # past the window (M = 16): the adaptation step runs on a full window
        a_robot, a_train = robot.act(obs, True), train_side.act(obs[None])[0]
        np.testing.assert_allclose(a_robot, a_train, rtol=1e-4, atol=1e-4)
        robot.applied(a_train)
        train_side.applied(a_train[None])
        obs = sim.step(a_train[None])[0][0]
    config_path = load_hardware_config(short_config("sim_halfcheetah_disabled_joint.toml", 20))
    report = run_online(bundle_dir, config_path, seed=1, adaptation_steps=1)
    assert report.status == "completed" and all(np.isfinite(e.episode_return) for e in report.episodes)


@pytest.mark.parametrize(
    ("adaptation", "match"),
    [
        ({"meta_learner": "maml", "inner_step": "adam", "steps": 1, "proximal": 0.0}, r"adaptation\.inner_step"),
        ({"meta_learner": "maml", "inner_step": "sgd", "steps": 0, "proximal": 0.0}, r"adaptation\.steps"),
        ({"meta_learner": "imaml", "inner_step": "sgd", "steps": 2, "proximal": -1.0}, r"adaptation\.proximal"),
        ({"meta_learner": "maml", "inner_step": "lstm", "steps": 1, "proximal": 0.0}, r"adaptation\.lstm_hidden"),
        ({"meta_learner": "reptile", "inner_step": "sgd", "steps": 1, "proximal": 0.0}, r"adaptation\.meta_learner"),
        ({"meta_learner": "maml", "inner_step": "lstm", "steps": 1, "proximal": 0.0, "lstm_hidden": 4}, "opt_h0"),
    ],
)
def test_bundle_metadata_must_describe_the_adaptation_graph(mb_bundles, tmp_path, adaptation, match) -> None:
    """The metadata says how adapt.onnx steps; a wrong or lying description is refused at load, naming the field
    (or, when well-formed but untrue, the graph input that is missing)."""
    broken = str(tmp_path / "b")
    shutil.copytree(mb_bundles["grbal"], broken)
    path = os.path.join(broken, "metadata.json")
    meta = json.load(open(path))
    assert ModelBundle.load(mb_bundles["grbal"]).meta.adaptation == md.AdaptStep()  # exported plain SGD
    json.dump(meta | {"adaptation": adaptation}, open(path, "w"))
    with pytest.raises(BundleError, match=match):
        ModelBundle.load(broken)


def test_only_grbal_bundles_may_declare_a_meta_learned_step(mb_bundles, tmp_path) -> None:
    broken = str(tmp_path / "b")
    shutil.copytree(mb_bundles["mb"], broken)
    path = os.path.join(broken, "metadata.json")
    meta = json.load(open(path))
    meta["adaptation"] = {"meta_learner": "imaml", "inner_step": "sgd", "steps": 3, "proximal": 1.0}
    json.dump(meta, open(path, "w"))
    with pytest.raises(BundleError, match="plain one-step SGD for method 'mb'"):
        ModelBundle.load(broken)
