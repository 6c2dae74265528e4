"""Export a trained dynamics model (GrBAL, ReBAL, MB) as a model bundle of plain ONNX inference graphs.

Nagabandi et al., ICLR 2019: on the robot, every control step adapts the model and plans with it.
The adaptation must run with onnxruntime alone (onnxruntime-training is unmaintained), so its
gradient is written out as an ordinary forward graph — the MLP's backward pass by hand:

- ``dynamics.onnx``: obs [N, d], act [N, a] -> next_obs [N, d]; ReBAL's also takes each row's state
  h, c [N, H] and returns h_next, c_next (a planner steps it through every candidate's rollout). The
  weights ``theta_i`` are overridable initializers, so the runtime feeds adapted ones.
- ``adapt.onnx`` (MLP models): the window w_obs [M, d], w_act [M, a], w_next [M, d] ->
  ``theta_i_adapted`` = theta_i - lr * dL/dtheta_i, L the mean squared normalized-delta error (as
  ``train.dynamics_model.adapt_step``); ``theta_i`` and ``lr`` are overridable (MB+DE feeds its running weights).
- ``recurrent_step.onnx`` (ReBAL): h, c [N, H], obs [N, d], act [N, a] -> h_next, c_next (the state
  update alone, for rebuilding the state over the last M transitions).

Normalization is folded into every graph. Built with ``onnx.helper`` (no torch); workstation side.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from metactl.controllers.dynamics import DynamicsError, DynamicsSpec, DynamicsStats
from metactl.controllers.serialization import load_dynamics_model
from metactl.deploy import metadata as md
from metactl.deploy.bundle_writer import write_bundle
from metactl.deploy.errors import BundleError
from metactl.deploy.export import IR_VERSION, _version

MODEL_EXTRA_KEYS = (
    "method", "family", "observation_names", "action_names", "control_period", "horizon",
    "action_low", "action_high", "reward_spec", "planner", "window", "inner_lr", "decision_steps", "train_config",
)  # fmt: skip


class _Graph:
    """A tiny builder: constants become initializers, every node names its single output."""

    def __init__(self) -> None:
        self.inits: list[onnx.TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []
        self._n = 0

    def const(self, name: str, value: Any, dtype: type = np.float32) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op: str, *inputs: str, out: str | None = None, outputs: int = 1, **attrs: Any) -> Any:
        self._n += 1
        names = (
            [out or f"{op.lower()}_{self._n}"]
            if outputs == 1
            else [f"{op.lower()}_{self._n}_{k}" for k in range(outputs)]
        )
        self.nodes.append(helper.make_node(op, list(inputs), names, name=f"n{self._n}_{op}", **attrs))
        return names[0] if outputs == 1 else names

    def model(self, name: str, inputs: list, outputs: list, doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits, doc_string=doc)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", md.OPSET)],
            producer_name="metactl",
            producer_version=_version(),
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


def _value(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _weights(g: _Graph, params: list[np.ndarray]) -> list[str]:
    """The parameters as overridable initializers ``theta_000`` ... (also declared as graph inputs)."""
    return [g.const(f"theta_{i:03d}", p) for i, p in enumerate(params)]


def _normalized(g: _Graph, stats: DynamicsStats, obs: str, act: str) -> tuple[str, str]:
    o = g.op("Div", g.op("Sub", obs, g.const("obs_mean", stats.obs_mean)), g.const("obs_std", stats.obs_std))
    a = g.op("Div", g.op("Sub", act, g.const("act_mean", stats.act_mean)), g.const("act_std", stats.act_std))
    return o, a


def _delta_target(g: _Graph, stats: DynamicsStats, obs: str, nxt: str) -> str:
    d = g.op("Sub", g.op("Sub", nxt, obs), g.const("delta_mean", stats.delta_mean))
    return g.op("Div", d, g.const("delta_std", stats.delta_std))


def _mlp(g: _Graph, w: list[str], x: str) -> tuple[str, list[str], list[str]]:
    """ReLU MLP. Returns (output, layer inputs, pre-activations) for the hand-written backward pass."""
    inputs, pre = [], []
    layers = len(w) // 2
    for i in range(layers):
        inputs.append(x)
        z = g.op("Add", g.op("MatMul", x, w[2 * i]), w[2 * i + 1])
        pre.append(z)
        x = g.op("Relu", z) if i < layers - 1 else z
    return x, inputs, pre


def _lstm(g: _Graph, w: list[str], x: str) -> str:
    """ReBAL's LSTM step on the graph inputs h, c: writes c_next and h_next (gates i, f, g, o); returns h_next."""
    gates = g.op("Add", g.op("Add", g.op("MatMul", x, w[0]), g.op("MatMul", "h", w[1])), w[2])
    i, f, gg, og = g.op("Split", gates, outputs=4, axis=1)
    c = g.op(
        "Add", g.op("Mul", g.op("Sigmoid", f), "c"), g.op("Mul", g.op("Sigmoid", i), g.op("Tanh", gg)), out="c_next"
    )
    return g.op("Mul", g.op("Sigmoid", og), g.op("Tanh", c), out="h_next")


def _state(spec: DynamicsSpec, suffix: str = "") -> list[onnx.ValueInfoProto]:
    """ReBAL's state h, c [N, H] as graph inputs (or, with ``suffix`` "_next", outputs)."""
    return [_value(n + suffix, ["N", spec.rnn_hidden]) for n in ("h", "c")]


def build_dynamics_graph(spec: DynamicsSpec, params: list[np.ndarray], stats: DynamicsStats) -> onnx.ModelProto:
    g = _Graph()
    w = _weights(g, params)
    o, a = _normalized(g, stats, "obs", "act")
    x = g.op("Concat", o, a, axis=1)
    inputs = [_value("obs", ["N", spec.obs_dim]), _value("act", ["N", spec.act_dim])]
    outputs = [_value("next_obs", ["N", spec.obs_dim])]
    head = w
    if spec.kind == "recurrent":  # the head reads [x, h_next]
        x, head = g.op("Concat", x, _lstm(g, w[:3], x), axis=1), w[3:]
        inputs += _state(spec)
        outputs += _state(spec, "_next")
    out, _, _ = _mlp(g, head, x)
    delta = g.op(
        "Add", g.op("Mul", out, g.const("delta_std", stats.delta_std)), g.const("delta_mean", stats.delta_mean)
    )
    g.op("Add", "obs", delta, out="next_obs")
    inputs += [_value(n, list(p.shape)) for n, p in zip(w, params, strict=True)]
    return g.model("metactl_dynamics", inputs, outputs,
                   f"metactl {spec.kind} dynamics model {spec.hidden}: next_obs = obs + predicted delta")  # fmt: skip


def build_adapt_graph(spec: DynamicsSpec, params: list[np.ndarray], stats: DynamicsStats, lr: float) -> onnx.ModelProto:
    """theta' = theta - lr * grad of the mean squared normalized-delta error on the window (hand-written backward)."""
    if spec.kind != "mlp":
        raise BundleError("the gradient adaptation step exists for MLP dynamics models only")
    g = _Graph()
    w = _weights(g, params)
    lr_name = g.const("lr", lr)
    o, a = _normalized(g, stats, "w_obs", "w_act")
    out, xs, zs = _mlp(g, w, g.op("Concat", o, a, axis=1))
    diff = g.op("Sub", out, _delta_target(g, stats, "w_obs", "w_next"))
    count = g.op("Cast", g.op("Size", diff), to=TensorProto.FLOAT)
    grad = g.op("Div", g.op("Mul", diff, g.const("two", 2.0)), count)  # dL/d(out), L = mean(diff^2)
    axes = g.const("axes_0", [0], np.int64)
    outputs = [""] * len(w)
    for i in reversed(range(len(w) // 2)):
        g_w = g.op("MatMul", g.op("Transpose", xs[i], perm=[1, 0]), grad)
        g_b = g.op("ReduceSum", grad, axes, keepdims=0)
        outputs[2 * i] = g.op("Sub", w[2 * i], g.op("Mul", g_w, lr_name), out=f"{w[2 * i]}_adapted")
        outputs[2 * i + 1] = g.op("Sub", w[2 * i + 1], g.op("Mul", g_b, lr_name), out=f"{w[2 * i + 1]}_adapted")
        if i > 0:  # through the ReLU of layer i-1: gradient where its pre-activation was > 0 (as torch)
            g_x = g.op("MatMul", grad, g.op("Transpose", w[2 * i], perm=[1, 0]))
            grad = g.op(
                "Mul", g_x, g.op("Cast", g.op("Greater", zs[i - 1], g.const(f"zero_{i}", 0.0)), to=TensorProto.FLOAT)
            )
    inputs = [_value("w_obs", ["M", spec.obs_dim]), _value("w_act", ["M", spec.act_dim]),
              _value("w_next", ["M", spec.obs_dim]), _value("lr", [])]  # fmt: skip
    inputs += [_value(n, list(p.shape)) for n, p in zip(w, params, strict=True)]
    outs = [_value(n, list(p.shape)) for n, p in zip(outputs, params, strict=True)]
    return g.model("metactl_adapt", inputs, outs, "GrBAL adaptation step: theta - lr * grad L(theta; window)")


def build_recurrent_step_graph(spec: DynamicsSpec, params: list[np.ndarray], stats: DynamicsStats) -> onnx.ModelProto:
    """ReBAL's state update alone: (h, c) and the inputs (obs, act) of N rows -> (h_next, c_next)."""
    g = _Graph()
    w = _weights(g, params[:3])
    o, a = _normalized(g, stats, "obs", "act")
    _lstm(g, w, g.op("Concat", o, a, axis=1))
    inputs = [*_state(spec), _value("obs", ["N", spec.obs_dim]), _value("act", ["N", spec.act_dim])]
    inputs += [_value(n, list(p.shape)) for n, p in zip(w, params[:3], strict=True)]
    return g.model("metactl_recurrent_step", inputs, _state(spec, "_next"), "ReBAL: the LSTM state update")


def export_model_bundle(model_path: str, out_dir: str, planner: dict[str, Any] | None = None) -> str:
    """Write the graphs of the dynamics model at ``model_path`` and their ``metadata.json`` into ``out_dir``;
    ``planner`` replaces the training run's planner settings (e.g. to deploy with fewer samples)."""
    if not os.path.isfile(model_path):
        raise BundleError(f"model file {model_path} not found; train one with `metactl train grbal|rebal|mb`")
    try:
        spec, params, stats, extra = load_dynamics_model(model_path)
    except DynamicsError as e:  # e.g. a ReBAL model of the earlier layout (its LSTM also read the delta)
        raise BundleError(f"model file {model_path}: {e}; re-train it with this metactl") from None
    missing = [k for k in MODEL_EXTRA_KEYS if k not in extra]
    if missing:
        raise BundleError(f"model file {model_path} lacks {missing}; re-train with this metactl")
    graphs = {md.DYNAMICS_FILE: build_dynamics_graph(spec, params, stats)}
    if spec.kind == "mlp":
        graphs[md.ADAPT_FILE] = build_adapt_graph(spec, params, stats, float(extra["inner_lr"]))
    else:
        graphs[md.RECURRENT_FILE] = build_recurrent_step_graph(spec, params, stats)
    if not all(np.all(np.isfinite(p)) for p in params):
        raise BundleError(f"model file {model_path} holds non-finite weights; it cannot be deployed")
    meta = {
        "format": md.FORMAT,
        "format_version": md.FORMAT_VERSION,
        "metactl_version": _version(),
        "bundle_kind": md.MODEL_KIND,
        "dynamics": spec.to_dict(),
        "stats": stats.to_dict(),
        "obs_dim": spec.obs_dim,
        "act_dim": spec.act_dim,
        "onnx_opset": md.OPSET,
        **{k: extra[k] for k in MODEL_EXTRA_KEYS},
    }
    if planner is not None:
        meta["planner"] = dict(planner)
    write_bundle(out_dir, graphs, meta)
    return out_dir
