"""PolicyBundle.load refuses broken bundles with a one-line message that says what is wrong and how to fix it."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from metactl.deploy import BundleError, PolicyBundle


def _copy(bundle: str, tmp_path) -> str:
    dst = str(tmp_path / "bundle")
    shutil.copytree(bundle, dst)
    return dst


def _edit_metadata(bundle: str, **changes) -> None:
    path = os.path.join(bundle, "metadata.json")
    meta = json.load(open(path))
    for key, value in changes.items():
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    json.dump(meta, open(path, "w"))


def _load_error(bundle: str) -> str:
    with pytest.raises(BundleError) as e:
        PolicyBundle.load(bundle)
    message = str(e.value)
    assert "\n" not in message, message
    return message


def test_loads_a_good_bundle(fc_bundle: str) -> None:
    bundle = PolicyBundle.load(fc_bundle)
    assert (bundle.obs_dim, bundle.act_dim) == (2, 2)
    assert bundle.metadata["observation_names"] == ["x", "y"]
    bundle.metadata["observation_names"].append("z")  # a copy: the bundle is unaffected
    assert bundle.metadata["observation_names"] == ["x", "y"]


def test_missing_directory(tmp_path) -> None:
    message = _load_error(str(tmp_path / "nowhere"))
    assert "not found" in message and "metactl export" in message


def test_missing_metadata(fc_bundle: str, tmp_path) -> None:
    bundle = _copy(fc_bundle, tmp_path)
    os.remove(os.path.join(bundle, "metadata.json"))
    message = _load_error(bundle)
    assert "metadata.json is missing" in message and "metactl export" in message


def test_missing_onnx(fc_bundle: str, tmp_path) -> None:
    bundle = _copy(fc_bundle, tmp_path)
    os.remove(os.path.join(bundle, "policy.onnx"))
    assert "policy.onnx is missing" in _load_error(bundle)


def test_corrupt_json(fc_bundle: str, tmp_path) -> None:
    bundle = _copy(fc_bundle, tmp_path)
    with open(os.path.join(bundle, "metadata.json"), "w") as f:
        f.write('{"format": "metactl-bundle", "obs_dim": ')
    assert "not valid JSON" in _load_error(bundle)


def test_missing_key(fc_bundle: str, tmp_path) -> None:
    bundle = _copy(fc_bundle, tmp_path)
    _edit_metadata(bundle, action_names=None)
    assert "lacks 'action_names'" in _load_error(bundle)


def test_wrong_type(fc_bundle: str, tmp_path) -> None:
    bundle = _copy(fc_bundle, tmp_path)
    _edit_metadata(bundle, control_period="fast")
    assert "'control_period' must be a finite number > 0.0" in _load_error(bundle)


def test_inconsistent_sizes(fc_bundle: str, tmp_path) -> None:
    bundle = _copy(fc_bundle, tmp_path)
    _edit_metadata(bundle, observation_names=["x", "y", "z"])
    assert "'policy.spec' sizes (2, 2, 6 parameters) disagree with observation_names" in _load_error(bundle)


def test_unsupported_format_version(fc_bundle: str, tmp_path) -> None:
    bundle = _copy(fc_bundle, tmp_path)
    _edit_metadata(bundle, format_version=1)
    assert "format_version 1 is not supported" in _load_error(bundle)


def test_hash_mismatch(fc_bundle: str, tmp_path) -> None:
    bundle = _copy(fc_bundle, tmp_path)
    with open(os.path.join(bundle, "policy.onnx"), "ab") as f:
        f.write(b"\x00")
    message = _load_error(bundle)
    assert "sha256" in message and "metactl export" in message


def test_onnx_from_another_export(fc_bundle: str, hc_bundle: str, tmp_path) -> None:
    """A graph swapped in with a matching hash but other sizes is caught by the graph check."""
    bundle = _copy(fc_bundle, tmp_path)
    shutil.copy(os.path.join(hc_bundle, "policy.onnx"), os.path.join(bundle, "policy.onnx"))
    _edit_metadata(bundle, files=json.load(open(os.path.join(hc_bundle, "metadata.json")))["files"])
    assert "policy.onnx input 'obs' should end in size 2" in _load_error(bundle)
