"""Export a trained RL² policy (``rl2.npz``) as a bundle: ``rl2_step.onnx`` + ``metadata.json`` (workstation side).

Duan et al. 2016: on the robot the adaptation lives in the GRU's hidden state, so the exported graph is one GRU
step with the state as an input and an output (PyTorch's GRU equations, gates r, z, n):

    x = ([obs, prev_action, prev_reward, prev_done] - in_mean) / in_std
    r = sigmoid(x W_ir + b_ir + h W_hr + b_hr),  z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn)),  h_next = n + z * (h - n)
    action = clip(h_next W_pi + b_pi, action_low, action_high)        (the Gaussian's mean: no sampling)

Built with ``onnx.helper`` from the saved numpy weights (no torch, no onnxscript); parity with torch's GRU is
tested at 1e-5. Only continuous-action (locomotion) runs are exported: the bandit and MDP families are
benchmarks, not robots.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnx

from metactl.deploy import metadata as md
from metactl.deploy.bundle_writer import write_bundle
from metactl.deploy.errors import BundleError
from metactl.deploy.export import _version
from metactl.deploy.graph_builder import Graph, value

INPUTS = ("obs", "prev_action", "prev_reward", "prev_done", "h")
OUTPUTS = ("action", "h_next")


def read_rl2(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, arrays) of an ``rl2.npz``; ``BundleError`` if it is not one."""
    if not os.path.isfile(path):
        raise BundleError(f"no RL² policy at {path}; train one with `metactl train rl2`")
    with np.load(path) as data:
        if "meta" not in data.files:
            raise BundleError(f"{path} is not an RL² policy file (no 'meta'); re-train with `metactl train rl2`")
        meta = json.loads(str(data["meta"]))
        arrays = {k: np.asarray(data[k], dtype=np.float32) for k in data.files if k != "meta"}
    return meta, arrays


def build_step_graph(
    spec: dict[str, Any], w: dict[str, np.ndarray], low: np.ndarray, high: np.ndarray
) -> onnx.ModelProto:
    """The GRU step graph of ``spec`` (``RL2Spec.to_dict``) with the weights ``w`` (``RL2Policy.arrays``)."""
    h_dim, a_dim, o_dim = int(spec["hidden"]), int(spec["actions"]), int(spec["obs_dim"])
    g = Graph()
    x = g.op("Concat", "obs", "prev_action", "prev_reward", "prev_done", axis=1)
    x = g.op("Div", g.op("Sub", x, g.const("in_mean", w["in_mean"])), g.const("in_std", w["in_std"]))
    wi = np.split(w["gru.weight_ih_l0"], 3, axis=0)  # r, z, n blocks [H, in]
    wh = np.split(w["gru.weight_hh_l0"], 3, axis=0)
    bi, bh = np.split(w["gru.bias_ih_l0"], 3), np.split(w["gru.bias_hh_l0"], 3)

    def lin(inp: str, weight: np.ndarray, bias: np.ndarray, name: str) -> str:
        return g.op("Add", g.op("MatMul", inp, g.const(f"W_{name}", weight.T)), g.const(f"b_{name}", bias))

    r = g.op("Sigmoid", g.op("Add", lin(x, wi[0], bi[0], "ir"), lin("h", wh[0], bh[0], "hr")))
    z = g.op("Sigmoid", g.op("Add", lin(x, wi[1], bi[1], "iz"), lin("h", wh[1], bh[1], "hz")))
    n = g.op("Tanh", g.op("Add", lin(x, wi[2], bi[2], "in"), g.op("Mul", r, lin("h", wh[2], bh[2], "hn"))))
    h_next = g.op("Add", n, g.op("Mul", z, g.op("Sub", "h", n)), out="h_next")
    mean = lin(h_next, w["pi.weight"], w["pi.bias"], "pi")
    g.op("Min", g.op("Max", mean, g.const("action_low", low)), g.const("action_high", high), out="action")
    inputs = [value("obs", [1, o_dim]), value("prev_action", [1, a_dim]), value("prev_reward", [1, 1]),
              value("prev_done", [1, 1]), value("h", [1, h_dim])]  # fmt: skip
    outputs = [value("action", [1, a_dim]), value("h_next", [1, h_dim])]
    return g.model("rl2_step", inputs, outputs, "RL² GRU step (Duan et al. 2016): state in, state out")


def build_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """``metadata.json`` of an RL² bundle (``deploy.metadata.RL2Metadata``; files added on writing)."""
    sig, config, spec = meta["signals"], meta["config"], meta["spec"]
    return {
        "format": md.FORMAT,
        "format_version": md.FORMAT_VERSION,
        "bundle_kind": md.RL2_KIND,
        "method": "rl2",
        "metactl_version": _version(),
        "family": str(config["family"]),
        "observation_names": list(sig["observation_names"]),
        "action_names": list(sig["action_names"]),
        "control_period": float(sig["control_period"]),
        "horizon": int(sig["horizon"]),
        "action_low": [float(v) for v in sig["action_low"]],
        "action_high": [float(v) for v in sig["action_high"]],
        "train_config": dict(config),
        "rl2": {"hidden": int(spec["hidden"]), "episodes_per_trial": int(config["episodes"]), "discrete": False},
        "onnx_opset": md.OPSET,
        "graph": {"inputs": list(INPUTS), "outputs": list(OUTPUTS)},
    }


def export_rl2_bundle(model_path: str, out_dir: str) -> str:
    """Write ``rl2_step.onnx`` and ``metadata.json`` for the RL² policy at ``model_path`` into ``out_dir``."""
    meta, arrays = read_rl2(model_path)
    if meta["spec"]["discrete"] or not meta.get("signals"):
        raise BundleError(f"{model_path} is an RL² {meta['config']['family']} policy (discrete actions, a benchmark "
                          "family): only locomotion runs export to a robot bundle")  # fmt: skip
    if not all(np.all(np.isfinite(a)) for a in arrays.values()):
        raise BundleError(f"{model_path} holds non-finite weights; it cannot be deployed")
    sig = meta["signals"]
    low, high = np.asarray(sig["action_low"], np.float32), np.asarray(sig["action_high"], np.float32)
    model = build_step_graph(meta["spec"], arrays, low, high)
    return write_bundle(out_dir, {md.RL2_FILE: model}, build_metadata(meta))
