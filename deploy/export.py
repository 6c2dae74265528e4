"""Export a trained ``policy.npz`` as a bundle: ``policy.onnx`` + ``metadata.json`` (workstation side).

The graph is the whole robot-side policy, so the robot needs only onnxruntime:

    obs [N, obs_dim] -> (obs - mean) / std -> clip(+-CLIP)
      -> per layer: tanh(x @ W + b), W and b sliced from ``params`` in ``PolicySpec.unflatten`` order
         (a policy with context inputs: the first layer's b is b + z W_context, z the vector's last entries)
      -> low + 0.5 * (x + 1) * (high - low) -> clip to [low, high] -> action [N, act_dim]

``params`` [P] is a graph input *and* an initializer holding the trained vector (an
overridable initializer): omit it to run the trained policy, feed it to run the
parameters an adaptation operator proposes — ES-MAML adapts on the robot without
re-exporting. The normalizer is folded into the graph (as rsl_rl's exporter does).
The per-dimension action clip is ``Min(Max(a, low), high)`` because ONNX ``Clip``
takes only scalar bounds. A second output ``params_used`` [P] echoes the parameter
vector of the call, which lets the runtime read the trained parameters without the
``onnx`` package.

Built with ``onnx.helper`` only (no torch); this module is the one place ``onnx`` is imported.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from metactl.controllers import Policy, load_policy
from metactl.controllers.normalizer import CLIP
from metactl.deploy import metadata as md
from metactl.deploy.bundle_writer import write_bundle
from metactl.deploy.errors import BundleError

log = logging.getLogger(__name__)

IR_VERSION = 8
"""ONNX IR version of exported models; readable by onnxruntime >= 1.10."""
EXTRA_KEYS = ("family", "control_period", "observation_names", "action_names", "adaptation", "horizon", "train_config")
"""What ``train`` stores in ``policy.npz``'s extra dict and the bundle needs."""


def export_bundle(policy_path: str, out_dir: str) -> str:
    """Write ``policy.onnx`` and ``metadata.json`` for the policy at ``policy_path`` into ``out_dir``; return it."""
    if not os.path.isfile(policy_path):
        raise BundleError(f"policy file {policy_path} not found; train one first with `metactl train`")
    policy, extra = load_policy(policy_path)
    missing = [k for k in EXTRA_KEYS if k not in extra]
    if missing:
        raise BundleError(f"policy file {policy_path} lacks {missing} in its extra data; re-train with this metactl")
    if not all(np.all(np.isfinite(a)) for a in (policy.params, policy.normalizer.mean, policy.normalizer.std)):
        raise BundleError(f"policy file {policy_path} holds non-finite parameters or normalizer; it cannot be deployed")
    model = build_model(policy)
    onnx.checker.check_model(model, full_check=True)
    write_bundle(out_dir, {md.ONNX_FILE: model}, build_metadata(policy, extra))
    log.info("exported %s -> %s (%d parameters)", policy_path, out_dir, policy.spec.num_params)
    return out_dir


def build_metadata(policy: Policy, extra: dict[str, Any]) -> dict[str, Any]:
    """The ``metadata.json`` dict for ``policy`` (see ``deploy.metadata.PolicyMetadata``; files added on writing)."""
    spec = policy.spec
    return {
        "format": md.FORMAT,
        "format_version": md.FORMAT_VERSION,
        "bundle_kind": md.POLICY_KIND,
        "metactl_version": _version(),
        "policy": {"kind": spec.kind, "spec": json.loads(json.dumps(spec.to_dict()))},
        "obs_dim": spec.obs_dim,
        "act_dim": spec.act_dim,
        "num_params": spec.num_params,
        "observation_names": list(extra["observation_names"]),
        "action_names": list(extra["action_names"]),
        "control_period": float(extra["control_period"]),
        "horizon": int(extra["horizon"]),
        "normalizer": {
            "mean": [float(v) for v in policy.normalizer.mean],
            "std": [float(v) for v in policy.normalizer.std],
            "clip": CLIP,
        },
        "action_low": [float(v) for v in spec.action_low],
        "action_high": [float(v) for v in spec.action_high],
        "adaptation": dict(extra["adaptation"]),
        "family": str(extra["family"]),
        "train_config": dict(extra["train_config"]),
        "onnx_opset": md.OPSET,
        "graph": {
            "inputs": {md.OBS_INPUT: ["N", spec.obs_dim], md.PARAMS_INPUT: [spec.num_params]},
            "outputs": {md.ACTION_OUTPUT: ["N", spec.act_dim], md.PARAMS_OUTPUT: [spec.num_params]},
        },
    }


def build_model(policy: Policy) -> onnx.ModelProto:
    """The ONNX model of ``policy`` (float32), with ``params`` as an overridable initializer."""
    spec = policy.spec
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value: Any, dtype: type = np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(op: str, inputs: list[str], output: str) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output))
        return output

    params = const(md.PARAMS_INPUT, policy.params)
    mean, std = const("norm_mean", policy.normalizer.mean), const("norm_std", policy.normalizer.std)
    x = node("Div", [node("Sub", [md.OBS_INPUT, mean], "obs_centered"), std], "obs_scaled")
    x = node("Clip", [x, const("obs_clip_low", -CLIP), const("obs_clip_high", CLIP)], "obs_normalized")
    axis = const("slice_axis", [0], np.int64)

    def piece(name: str, start: int, stop: int) -> str:
        """``params[start:stop]`` as tensor ``name``."""
        bounds = [const(f"{name}_start", [start], np.int64), const(f"{name}_stop", [stop], np.int64)]
        return node("Slice", [params, *bounds, axis], name)

    for i, (n_in, n_out, w_at, b_at, b_end) in enumerate(spec.layout):
        if i == 0:  # the context's rows of W0 are folded into the bias below, so x @ w takes obs_dim rows
            n_in = spec.obs_dim
        w_flat = piece(f"w{i}_flat", w_at, w_at + n_in * n_out)
        w = node("Reshape", [w_flat, const(f"w{i}_shape", [n_in, n_out], np.int64)], f"w{i}")
        b = piece(f"b{i}", b_at, b_end)
        if i == 0 and spec.context:  # b0 + z W_context, as PolicySpec.effective_layers
            c, (z_at, z_end) = spec.context, spec.context_span()
            z = node("Reshape", [piece("z_flat", z_at, z_end), const("z_shape", [1, c], np.int64)], "z")
            wz_flat = piece("wz_flat", w_at + n_in * n_out, b_at)
            wz = node("Reshape", [wz_flat, const("wz_shape", [c, n_out], np.int64)], "wz")
            b = node("Add", [b, node("MatMul", [z, wz], "context_shift")], "b0_context")
        x = node("Add", [node("MatMul", [x, w], f"layer{i}_matmul"), b], f"layer{i}_pre")
        x = node("Tanh", [x], f"layer{i}")
    low, high = np.asarray(spec.action_low), np.asarray(spec.action_high)
    x = node("Add", [x, const("one", 1.0)], "squash_shifted")
    x = node("Mul", [x, const("half_range", 0.5 * (high - low))], "squash_scaled")
    x = node("Add", [x, const("action_low", low)], "action_unclipped")
    x = node("Max", [x, "action_low"], "action_above_low")
    node("Min", [x, const("action_high", high)], md.ACTION_OUTPUT)
    node("Identity", [params], md.PARAMS_OUTPUT)

    graph = helper.make_graph(
        nodes,
        "metactl_policy",
        inputs=[
            helper.make_tensor_value_info(md.OBS_INPUT, TensorProto.FLOAT, ["N", spec.obs_dim]),
            helper.make_tensor_value_info(md.PARAMS_INPUT, TensorProto.FLOAT, [spec.num_params]),
        ],
        outputs=[
            helper.make_tensor_value_info(md.ACTION_OUTPUT, TensorProto.FLOAT, ["N", spec.act_dim]),
            helper.make_tensor_value_info(md.PARAMS_OUTPUT, TensorProto.FLOAT, [spec.num_params]),
        ],
        initializer=inits,
        doc_string=f"metactl {spec.kind} policy {spec.layer_sizes}; feed 'params' to override the trained ones",
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", md.OPSET)], producer_name="metactl", producer_version=_version()
    )
    model.ir_version = IR_VERSION
    return model


def _version() -> str:
    try:
        return importlib.metadata.version("metactl")
    except importlib.metadata.PackageNotFoundError:
        log.warning("metactl is not installed as a package; recording metactl_version 'unknown'")
        return "unknown"
