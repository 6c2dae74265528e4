"""The bundle's ``metadata.json``: its file names, format version and schema check.

Shared by the exporter (workstation) and the loader (robot), so both agree on one
schema. A bundle is the ONNX graph plus this JSON: signal names and their order,
sizes, control period, the frozen normalizer, actuator limits, the adaptation
operator and the training config it came from.
"""

from __future__ import annotations

import math
from typing import Any

from controllers import PolicyError, PolicySpec
from deploy.errors import BundleError

FORMAT = "metactl-bundle"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
ONNX_FILE = "policy.onnx"
OPSET = 17
"""ONNX opset of exported graphs; onnxruntime >= 1.14 runs it."""

POLICY_KIND = "policy"
MODEL_KIND = "model"
"""``bundle_kind``: an ES policy graph (the default when absent) or a dynamics model run with MPC."""
DYNAMICS_FILE = "dynamics.onnx"
ADAPT_FILE = "adapt.onnx"
RECURRENT_FILE = "recurrent_step.onnx"
MODEL_METHODS = ("grbal", "rebal", "mb")

# Graph tensor names (the contract between export.py and bundle.py).
OBS_INPUT = "obs"
PARAMS_INPUT = "params"
ACTION_OUTPUT = "action"
PARAMS_OUTPUT = "params_used"

_LIST = (list,)
_NUMBER = (int, float)
SCHEMA: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "format_version": (int,),
    "metactl_version": (str,),
    "policy": (dict,),
    "obs_dim": (int,),
    "act_dim": (int,),
    "num_params": (int,),
    "observation_names": _LIST,
    "action_names": _LIST,
    "control_period": _NUMBER,
    "horizon": (int,),
    "normalizer": (dict,),
    "action_low": _LIST,
    "action_high": _LIST,
    "adaptation": (dict,),
    "family": (str,),
    "train_config": (dict,),
    "onnx_file": (str,),
    "onnx_sha256": (str,),
}
"""Required top-level keys and their JSON types."""

_FIX = "re-run `metactl export` on the trained policy.npz"


def _fail(source: str, what: str) -> BundleError:
    return BundleError(f"bundle {source}: {what}; {_FIX}")


MODEL_SCHEMA: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "format_version": (int,),
    "bundle_kind": (str,),
    "method": (str,),
    "dynamics": (dict,),
    "stats": (dict,),
    "obs_dim": (int,),
    "act_dim": (int,),
    "observation_names": _LIST,
    "action_names": _LIST,
    "control_period": _NUMBER,
    "horizon": (int,),
    "action_low": _LIST,
    "action_high": _LIST,
    "reward_spec": (dict,),
    "planner": (dict,),
    "window": (int,),
    "inner_lr": _NUMBER,
    "family": (str,),
    "files": (dict,),
}
"""Required keys of a model bundle (GrBAL / ReBAL / MB)."""


def bundle_kind(meta: Any) -> str:
    """``"policy"`` or ``"model"`` (bundles from before model bundles existed are policies)."""
    return meta.get("bundle_kind", POLICY_KIND) if isinstance(meta, dict) else POLICY_KIND


def _check_header(meta: Any, source: str, kind: str) -> None:
    if not isinstance(meta, dict):
        raise _fail(source, f"metadata must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise _fail(source, f"'format' is {meta.get('format')!r}, not {FORMAT!r} (not a metactl bundle?)")
    got = bundle_kind(meta)
    if got != kind:
        names = {POLICY_KIND: "an ES policy (adapted by its operator)", MODEL_KIND: "a dynamics model (run with MPC)"}
        method = f" of method {meta.get('method')!r}" if got == MODEL_KIND else ""
        raise BundleError(
            f"bundle {source} holds {names.get(got, repr(got))}{method}, but this needs {names[kind]}; "
            f"pass a bundle of the right kind (`metactl run` picks the runtime from the bundle itself)"
        )


def _check_types(meta: dict[str, Any], schema: dict[str, tuple[type, ...]], source: str) -> None:
    for key, types in schema.items():
        if key not in meta:
            raise _fail(source, f"metadata lacks '{key}'")
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise _fail(source, f"metadata '{key}' must be {names}, got {type(value).__name__}")


def validate_model_metadata(meta: Any, source: str) -> None:
    """Raise ``BundleError`` naming the first missing, ill-typed or inconsistent field of a model bundle."""
    from controllers.dynamics import DynamicsError, DynamicsSpec, DynamicsStats, ForwardCost

    _check_header(meta, source, MODEL_KIND)
    _check_types(meta, MODEL_SCHEMA, source)
    if meta["format_version"] != FORMAT_VERSION:
        raise BundleError(f"bundle {source}: format_version {meta['format_version']} is not supported")
    if meta["method"] not in MODEL_METHODS:
        raise _fail(source, f"'method' must be one of {MODEL_METHODS}, got {meta['method']!r}")
    try:
        spec = DynamicsSpec.from_dict(meta["dynamics"])
        stats = DynamicsStats.from_dict(meta["stats"])
        ForwardCost(meta["observation_names"], meta["reward_spec"])
    except (DynamicsError, KeyError, TypeError, ValueError) as e:
        raise _fail(source, f"model description is invalid ({e})") from None
    if (spec.obs_dim, spec.act_dim) != (meta["obs_dim"], meta["act_dim"]):
        raise _fail(source, f"'dynamics' sizes {spec.obs_dim}/{spec.act_dim} disagree with obs_dim/act_dim")
    lists = {"observation_names": spec.obs_dim, "action_names": spec.act_dim, "action_low": spec.act_dim,
             "action_high": spec.act_dim}  # fmt: skip
    for key, size in lists.items():
        if len(meta[key]) != size:
            raise _fail(source, f"'{key}' must have {size} entries, got {len(meta[key])}")
    if len(stats.obs_mean) != spec.obs_dim or len(stats.act_mean) != spec.act_dim:
        raise _fail(source, "'stats' sizes disagree with the dynamics model's")
    needed = [DYNAMICS_FILE, ADAPT_FILE if spec.kind == "mlp" else RECURRENT_FILE]
    for name in needed:
        if not isinstance(meta["files"].get(name), str):
            raise _fail(source, f"'files' lacks the sha256 of {name}")


def validate_metadata(meta: Any, source: str) -> None:
    """Raise ``BundleError`` naming the first missing or ill-typed field of ``meta`` (read from ``source``)."""
    _check_header(meta, source, POLICY_KIND)
    for key, types in SCHEMA.items():
        if key not in meta:
            raise _fail(source, f"metadata lacks '{key}'")
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise _fail(source, f"metadata '{key}' must be {names}, got {type(value).__name__}")
    if meta["format_version"] != FORMAT_VERSION:
        raise BundleError(
            f"bundle {source}: format_version {meta['format_version']} is not supported by this runtime "
            f"(it reads version {FORMAT_VERSION}); export with the metactl version the robot runs"
        )
    _check_sizes(meta, source)


def _check_sizes(meta: dict[str, Any], source: str) -> None:
    obs_dim, act_dim = meta["obs_dim"], meta["act_dim"]
    if obs_dim < 1 or act_dim < 1 or meta["num_params"] < 1 or meta["horizon"] < 1:
        raise _fail(source, "obs_dim, act_dim, num_params and horizon must be positive")
    if not (math.isfinite(meta["control_period"]) and meta["control_period"] > 0):
        raise _fail(source, f"control_period must be a positive number of seconds, got {meta['control_period']!r}")
    norm = meta["normalizer"]
    lengths = {
        "observation_names": (meta["observation_names"], obs_dim),
        "normalizer.mean": (norm.get("mean"), obs_dim),
        "normalizer.std": (norm.get("std"), obs_dim),
        "action_names": (meta["action_names"], act_dim),
        "action_low": (meta["action_low"], act_dim),
        "action_high": (meta["action_high"], act_dim),
    }
    for key, (values, size) in lengths.items():
        if not isinstance(values, list) or len(values) != size:
            got = len(values) if isinstance(values, list) else type(values).__name__
            raise _fail(source, f"'{key}' must be a list of {size} entries, got {got}")
    for key in ("observation_names", "action_names"):
        if not all(isinstance(n, str) and n for n in meta[key]):
            raise _fail(source, f"'{key}' must hold non-empty strings")
    for key in ("normalizer.mean", "normalizer.std", "action_low", "action_high"):
        values = lengths[key][0]
        if not all(isinstance(v, _NUMBER) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise _fail(source, f"'{key}' must hold finite numbers")
    if not all(v > 0 for v in norm["std"]):
        raise _fail(source, "'normalizer.std' must be positive")
    policy = meta["policy"]
    if not isinstance(policy.get("kind"), str) or not isinstance(policy.get("spec"), dict):
        raise _fail(source, "'policy' must hold 'kind' (str) and 'spec' (object)")
    try:
        spec = PolicySpec.from_dict(policy["spec"])
    except (PolicyError, TypeError) as e:
        raise _fail(source, f"'policy.spec' is invalid ({e})") from None
    sizes = (spec.kind, spec.obs_dim, spec.act_dim, spec.num_params)
    if sizes != (policy["kind"], obs_dim, act_dim, meta["num_params"]):
        raise _fail(source, f"'policy.spec' (kind, obs_dim, act_dim, num_params) = {sizes} disagrees with the metadata")
