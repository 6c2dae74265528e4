"""Hostile bundles: every field is checked before anything runs, paths never leave the bundle folder, graphs must
match the metadata, and a fuzzed metadata.json only ever gives a one-line BundleError (issue 18)."""

from __future__ import annotations

import copy
import json
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metactl.deploy import BundleError, load_bundle
from metactl.deploy.metadata import parse_metadata


def _copy(bundle: str, tmp_path, name: str = "b") -> str:
    dst = str(tmp_path / name)
    shutil.copytree(bundle, dst)
    return dst


def _with(bundle: str, edit) -> str:
    path = os.path.join(bundle, "metadata.json")
    meta = json.load(open(path))
    edit(meta)
    json.dump(meta, open(path, "w"))
    return bundle


def _error(bundle: str) -> str:
    with pytest.raises(BundleError) as e:
        load_bundle(bundle)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda m: m["planner"].update(name="annealing"), "'planner' is invalid (planner name 'annealing' is unknown"),
        (lambda m: m.update(window=0), "'window' must be an integer in [1, 10000], got 0"),
        (lambda m: m.update(action_low=m["action_high"], action_high=m["action_low"]), "must be below 'action_high'"),
        (lambda m: m["action_low"].__setitem__(0, float("nan")), "'action_low' must hold finite numbers"),
        (lambda m: m.update(horizon=10**12), "'horizon' must be an integer in [1, 100000]"),
        (lambda m: m["planner"].update(samples=10**6), "candidate-steps per control step"),
        (lambda m: m.update(decision_steps=0), "'decision_steps' must be an integer in [1, 1000]"),
        (lambda m: m.update(files={"/etc/passwd": "0" * 64, **m["files"]}), "not a plain file name inside the bundle"),
        (lambda m: m.update(files={"../dynamics.onnx": "0" * 64, **m["files"]}), "not a plain file name"),
        (lambda m: m["files"].pop("adapt.onnx"), "'files' lacks ['adapt.onnx']"),
        (lambda m: m.update(method="rebal"), "kind 'mlp' does not fit method 'rebal'"),
    ],
)
def test_model_bundle_metadata_is_checked_in_full(mb_bundles, tmp_path, edit, needle) -> None:
    assert needle in _error(_with(_copy(mb_bundles["grbal"], tmp_path), edit))


@pytest.mark.parametrize(
    ("span", "needle"),
    [([0, 10**6], "'adaptation' span [0, 1000000] is beyond the policy's"), ([5, 5], "'adaptation' is invalid")],
)
def test_a_policy_bundles_adaptation_span_must_fit_its_parameters(fc_bundle, tmp_path, span, needle) -> None:
    """Context adaptation perturbs params[start:stop]: a span the policy does not have is refused at load time,
    not half-way through the robot's adaptation."""
    assert needle in _error(_with(_copy(fc_bundle, tmp_path), lambda m: m["adaptation"].update(span=span)))


@pytest.mark.parametrize(("context", "needle"), [(-1, "context"), (True, "context"), (10**6, "context"),
                                                 (3, "disagree with observation_names")])  # fmt: skip
def test_a_policy_bundles_context_must_be_a_sane_count_that_fits_its_sizes(fc_bundle, tmp_path, context, needle):
    """A hand-edited ``context`` in the spec: a bad count is named, and one the recorded num_params does not
    include is refused (the graph would slice other parameters)."""
    error = _error(_with(_copy(fc_bundle, tmp_path), lambda m: m["policy"]["spec"].update(context=context)))
    assert needle in error, error


def test_graph_signatures_are_checked_for_every_graph(mb_bundles, tmp_path) -> None:
    """A GrBAL bundle whose adapt.onnx is another model's (hash updated to match): the signature check names it."""
    bundle = _copy(mb_bundles["grbal"], tmp_path)
    shutil.copy(os.path.join(mb_bundles["rebal"], "recurrent_step.onnx"), os.path.join(bundle, "adapt.onnx"))
    digest = json.load(open(os.path.join(mb_bundles["rebal"], "metadata.json")))["files"]["recurrent_step.onnx"]
    _with(bundle, lambda m: m["files"].update({"adapt.onnx": digest}))
    assert "adapt.onnx has no input 'w_obs'" in _error(bundle)
    rebal = _copy(mb_bundles["rebal"], tmp_path, "r")
    shutil.copy(os.path.join(mb_bundles["grbal"], "adapt.onnx"), os.path.join(rebal, "recurrent_step.onnx"))
    digest = json.load(open(os.path.join(mb_bundles["grbal"], "metadata.json")))["files"]["adapt.onnx"]
    _with(rebal, lambda m: m["files"].update({"recurrent_step.onnx": digest}))
    assert "recurrent_step.onnx has no input 'h'" in _error(rebal)


def test_a_symlink_out_of_the_bundle_is_not_followed(fc_bundle, tmp_path) -> None:
    """A bundle file may not name a path; a graph replaced by a symlink to elsewhere fails its hash check."""
    bundle = _copy(fc_bundle, tmp_path)
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"not the graph")
    os.remove(os.path.join(bundle, "policy.onnx"))
    os.symlink(outside, os.path.join(bundle, "policy.onnx"))
    assert "policy.onnx has sha256" in _error(bundle)


def _mutations() -> st.SearchStrategy:
    values = st.one_of(
        st.none(), st.booleans(), st.integers(-(10**15), 10**15), st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20), st.lists(st.floats(allow_nan=True), max_size=5), st.dictionaries(st.text(max_size=5),
        st.integers(), max_size=3),
    )  # fmt: skip
    return st.lists(st.tuples(st.integers(0, 2**30), values, st.booleans()), min_size=1, max_size=4)


def _mutate(meta: dict, mutations) -> dict:
    """Replace (or delete) one field per mutation, at any depth (lists included)."""
    meta = copy.deepcopy(meta)
    for pick, value, delete in mutations:
        target, key, depth = meta, None, 0
        while True:
            keys = sorted(target) if isinstance(target, dict) else list(range(len(target)))
            key = keys[(pick >> (3 * depth)) % len(keys)]
            child = target[key]
            if isinstance(child, dict | list) and child and (pick >> (3 * depth + 2)) % 2:
                target, depth = child, depth + 1
                continue
            break
        if delete and isinstance(target, dict):
            target.pop(key, None)
        else:
            target[key] = value
    return meta


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=_mutations(), kind=st.sampled_from(["grbal", "rebal", "policy"]))
def test_fuzzed_metadata_is_accepted_or_refused_in_one_line(mb_bundles, fc_bundle, mutations, kind) -> None:
    source = fc_bundle if kind == "policy" else mb_bundles[kind]
    meta = json.load(open(os.path.join(source, "metadata.json")))
    try:
        parse_metadata(json.loads(json.dumps(_mutate(meta, mutations))), "fuzz")
    except BundleError as e:
        assert "\n" not in str(e) and str(e).startswith("bundle fuzz")
