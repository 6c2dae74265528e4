"""Online adaptation on the simulated robot: compatibility checks, episode accounting, identity, determinism."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import sys
from statistics import NormalDist

import numpy as np
import pytest

from metactl import sim, train
from metactl.controllers import load_policy, make_operator
from metactl.deploy import (
    BundleError,
    PolicyBundle,
    RobotLink,
    SimRobot,
    check_compatibility,
    load_hardware_config,
    run_online,
)
from metactl.deploy.export import export_bundle


def _compat_error(meta, config) -> str:
    with pytest.raises(BundleError) as e:
        check_compatibility(meta, config)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_compatible_pair_passes(fc_bundle: str, shipped_config) -> None:
    check_compatibility(PolicyBundle.load(fc_bundle).meta, load_hardware_config(shipped_config("four_corners")))


def test_wrong_sizes(fc_bundle: str, shipped_config) -> None:
    config = load_hardware_config(shipped_config("halfcheetah_fb"))
    message = _compat_error(PolicyBundle.load(fc_bundle).meta, config)
    assert message.startswith("the bundle has 2 observations but") and "lists 17" in message
    assert "export a bundle trained for this robot" in message


def test_swapped_order(hc_bundle: str, shipped_config) -> None:
    config = load_hardware_config(shipped_config("halfcheetah_fb"))
    obs = list(config.signals.observations)
    obs[2], obs[3] = obs[3], obs[2]
    swapped = dataclasses.replace(config, signals=dataclasses.replace(config.signals, observations=tuple(obs)))
    message = _compat_error(PolicyBundle.load(hc_bundle).meta, swapped)
    assert f"observation 2 is 'pos:bthigh' in the bundle but 'pos:bshin' in {config.path}" in message
    assert "same names, different order" in message
    acts = list(config.signals.actions)[::-1]
    reversed_acts = dataclasses.replace(config, signals=dataclasses.replace(config.signals, actions=tuple(acts)))
    message = _compat_error(PolicyBundle.load(hc_bundle).meta, reversed_acts)
    assert "action 0 is 'bthigh' in the bundle but 'ffoot'" in message


def test_wrong_period(fc_bundle: str, shipped_config) -> None:
    config = load_hardware_config(shipped_config("four_corners"))
    slow = dataclasses.replace(config, control=dataclasses.replace(config.control, period_s=0.1 * (1 + 1e-6)))
    assert "control period 0.1 s" in _compat_error(PolicyBundle.load(fc_bundle).meta, slow)
    close = dataclasses.replace(config, control=dataclasses.replace(config.control, period_s=0.1 * (1 + 1e-12)))
    check_compatibility(PolicyBundle.load(fc_bundle).meta, close)  # within rel tol 1e-9


def test_sim_robot_is_a_robot_link() -> None:
    assert isinstance(SimRobot("four_corners"), RobotLink)


def test_run_online_report_and_files(fc_bundle: str, shipped_config, tmp_path) -> None:
    out = str(tmp_path / "online")
    report = run_online(fc_bundle, shipped_config("four_corners"), adaptation_steps=2, seed=5, out_dir=out)
    schedule = make_operator(PolicyBundle.load(fc_bundle).metadata["adaptation"]).schedule()
    assert schedule == (1, 5, 5)  # batch hill climbing: baseline, then 2 batches of 5
    assert len(report.episodes) == 1 + 2 * (sum(schedule) + 1)  # 25
    kinds = [e.kind for e in report.episodes]
    assert kinds == ["pre"] + (["query"] * 11 + ["post"]) * 2
    assert all(e.length == 100 for e in report.episodes)  # four_corners never terminates; horizon 100
    assert report.pre_adaptation_return == report.episodes[0].episode_return
    assert list(report.post_adaptation_returns) == [e.episode_return for e in report.episodes if e.kind == "post"]
    assert report.adapted_params.shape == PolicyBundle.load(fc_bundle).params.shape

    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["pre_adaptation_return"] == report.pre_adaptation_return
    assert summary["post_adaptation_return"] == report.post_adaptation_returns[-1]
    assert summary["post_adaptation_returns"] == list(report.post_adaptation_returns)
    assert summary["episodes"] == 25 and summary["bundle"] == fc_bundle
    assert summary["config"] == shipped_config("four_corners")
    assert summary["task"] == {"type": "GoalTask", "goal": [2.0, 2.0], "distractors": []}
    rows = list(csv.DictReader(open(os.path.join(out, "episodes.csv"))))
    assert len(rows) == 25 and rows[0]["kind"] == "pre"
    assert float(rows[0]["episode_return"]) == report.pre_adaptation_return
    np.testing.assert_array_equal(np.load(os.path.join(out, "adapted_params.npy")), report.adapted_params)
    assert os.path.getsize(os.path.join(out, "adaptation.png")) > 1000


@pytest.mark.parametrize(
    ("params", "context", "sampling"),
    [("first_bias", 0, "gaussian"), ("context", 2, "gaussian"), ("context", 1, "stratified")],
)
def test_context_adaptation_on_the_robot_moves_only_its_span(
    tmp_path_factory, shipped_config, params, context, sampling
) -> None:
    """An MLP meta-trained with --adaptation.params first_bias (or context, with context inputs): its bundle
    records the span, and the robot's hill climbing (the same operator, rebuilt from the bundle, through the ONNX
    graph) changes those parameters and nothing else. Stratified queries reach the robot too: one context number
    only ever moves by sums of the batch's normal quantiles."""
    adaptation = {"name": "hill_climb", "queries": 10, "sigma": 1.0, "mode": "batch", "params": params,
                  "sampling": sampling, "batch_size": 2 if sampling == "stratified" else 5}  # fmt: skip
    config = train.config_for("four_corners", iterations=2, directions=2, tasks_per_iteration=1, eval_every=1,
                              eval_repeats=1, policy="mlp", hidden=(4,), context=context,
                              adaptation=adaptation)  # fmt: skip
    policy = train.train(config, str(tmp_path_factory.mktemp("fc_context")), progress=False).policy_path
    bundle = PolicyBundle.load(export_bundle(policy, str(tmp_path_factory.mktemp("fc_context_bundle"))))
    spec = bundle.meta.spec
    start, stop = spec.bias_span(0) if params == "first_bias" else spec.context_span()
    want = [2 * 4, 2 * 4 + 4] if params == "first_bias" else [spec.num_params - context, spec.num_params]
    assert bundle.metadata["adaptation"]["span"] == [start, stop] == want
    obs = np.random.default_rng(0).standard_normal((5, 2))
    np.testing.assert_allclose(bundle.act(obs), load_policy(policy)[0].act_batch(obs), atol=1e-5)  # graph = numpy
    report = run_online(bundle.directory, shipped_config("four_corners"), adaptation_steps=1, seed=2)
    moved = np.flatnonzero(report.adapted_params != bundle.params)
    assert moved.size and start <= moved.min() and moved.max() < stop, moved
    assert bundle.metadata["adaptation"]["sampling"] == sampling
    if sampling == "stratified":  # 5 rounds of 2 queries: each kept step is +-Phi^-1(3/4) (sigma 1)
        steps = (report.adapted_params[start] - bundle.params[start]) / NormalDist().inv_cdf(0.75)
        assert steps == pytest.approx(round(steps), abs=1e-9) and 1 <= abs(round(steps)) <= 5, steps


def test_pre_adaptation_episode_matches_sim_rollout(fc_policy_path: str, fc_bundle: str, shipped_config) -> None:
    """The robot loop accounts rewards like ``sim.rollout`` (float32 graph vs float64 numpy: tiny drift only)."""
    policy, _ = load_policy(fc_policy_path)
    family = sim.make_family("four_corners")
    expected = sim.rollout(family.make_batch([family.test_tasks()[2]]), policy.act_batch, [0], 100).returns[0]
    report = run_online(fc_bundle, shipped_config("four_corners"), task=2, seed=0)
    assert report.pre_adaptation_return == pytest.approx(expected, rel=1e-5)
    assert report.link["task"] == {"type": "GoalTask", "goal": [-2.0, -2.0], "distractors": []}


def test_zero_step_size_is_identity(fc_identity_bundle: str, shipped_config) -> None:
    report = run_online(fc_identity_bundle, shipped_config("four_corners"), adaptation_steps=2, seed=1)
    assert len(report.episodes) == 1 + 2 * (3 + 1)  # es_grad, 2 queries + baseline per step
    assert report.post_adaptation_returns == (report.pre_adaptation_return,) * 2
    np.testing.assert_array_equal(report.adapted_params, PolicyBundle.load(fc_identity_bundle).params)


def test_identity_and_seeds_with_reset_noise(hc_identity_bundle: str, shipped_config) -> None:
    """HalfCheetah has initial-state noise: pre and post share a seed; the queries of one ES-gradient step share one
    seed of their own (the operator's seed slots: common random numbers, as in training), each step another."""
    report = run_online(hc_identity_bundle, shipped_config("halfcheetah_fb"), adaptation_steps=2, seed=3)
    assert all(e.length == 20 for e in report.episodes)  # episode_steps defaults to the bundle horizon
    evals = [e for e in report.episodes if e.kind != "query"]
    queries = [e for e in report.episodes if e.kind == "query"]
    assert len({e.seed for e in evals}) == 1
    by_step = {step: {e.seed for e in queries if e.step == step} for step in (1, 2)}
    assert all(len(seeds) == 1 for seeds in by_step.values()) and by_step[1] != by_step[2]
    assert evals[0].seed not in by_step[1] | by_step[2]
    assert report.post_adaptation_returns == (report.pre_adaptation_return,) * 2
    # The baseline query (round 0, query 0) runs the same params as pre but on another seed: a different return.
    assert queries[0].episode_return != report.pre_adaptation_return


def test_same_seed_same_report(hc_bundle: str, shipped_config) -> None:
    config = load_hardware_config(shipped_config("halfcheetah_fb"))
    a = run_online(hc_bundle, config, task=1, adaptation_steps=1, seed=7)
    b = run_online(hc_bundle, config, task=1, adaptation_steps=1, seed=7)
    c = run_online(hc_bundle, config, task=1, adaptation_steps=1, seed=8)
    untimed = lambda r: {k: v for k, v in r.summary().items() if k != "timing"}  # noqa: E731 (wall-clock figures)
    assert untimed(a) == untimed(b) and a.episodes == b.episodes
    np.testing.assert_array_equal(a.adapted_params, b.adapted_params)
    assert a.episodes != c.episodes


def test_bad_arguments(fc_bundle: str, shipped_config) -> None:
    with pytest.raises(ValueError, match="adaptation_steps must be a positive integer"):
        run_online(fc_bundle, shipped_config("four_corners"), adaptation_steps=0)
    with pytest.raises(BundleError, match="the bundle has 2 observations"):
        run_online(fc_bundle, shipped_config("ant_fb"))


def test_plot_is_skipped_without_matplotlib(
    fc_identity_bundle: str, shipped_config, tmp_path, monkeypatch, caplog
) -> None:
    """matplotlib is not a robot dependency: without it the run still writes everything but the plot."""
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes `import matplotlib.figure` fail
    out = str(tmp_path / "no_plot")
    with caplog.at_level(logging.WARNING, logger="metactl.deploy.report"):
        run_online(fc_identity_bundle, shipped_config("four_corners"), out_dir=out)
    assert sorted(os.listdir(out)) == ["adapted_params.npy", "episodes.csv", "run.mcap", "summary.json"]
    assert "matplotlib is not installed" in caplog.text
