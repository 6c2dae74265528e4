"""Export a trained dynamics model (GrBAL, ReBAL, MB) as a model bundle of plain ONNX inference graphs.

Nagabandi et al., ICLR 2019: on the robot, every control step adapts the model and plans with it.
The adaptation must run with onnxruntime alone (onnxruntime-training is unmaintained), so its
gradient is written out as an ordinary forward graph — the MLP's backward pass by hand:

- ``dynamics.onnx``: obs [N, d], act [N, a] -> next_obs [N, d]; ReBAL's also takes each row's state
  h, c [N, H] and returns h_next, c_next (a planner steps it through every candidate's rollout). The
  weights ``theta_i`` are overridable initializers, so the runtime feeds adapted ones.
- ``adapt.onnx`` (MLP models): the window w_obs [M, d], w_act [M, a], w_next [M, d] ->
  ``theta_i_adapted``, the model's inner step(s) on L, the mean squared normalized-delta error
  (``deploy.adapt_export``: SGD theta_i - lr * dL/dtheta_i as ``train.dynamics_model.adapt_step``, Meta-SGD, the
  LSTM optimizer with its state, iMAML's proximal steps); ``theta_i`` are overridable (MB+DE feeds its running
  weights).
- ``recurrent_step.onnx`` (ReBAL): h, c [N, H], obs [N, d], act [N, a] -> h_next, c_next (the state
  update alone, for rebuilding the state over the last M transitions).

Normalization is folded into every graph. Built with ``onnx.helper`` (no torch); workstation side.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx

from metactl.controllers.dynamics import DynamicsError, DynamicsSpec, DynamicsStats
from metactl.controllers.serialization import load_dynamics_model, load_inner_params
from metactl.deploy import metadata as md
from metactl.deploy.adapt_export import build_adapt_graph
from metactl.deploy.bundle_writer import write_bundle
from metactl.deploy.errors import BundleError
from metactl.deploy.export import _version
from metactl.deploy.graph_builder import Graph, lstm, mlp, normalized, state, value, weights

MODEL_EXTRA_KEYS = (
    "method", "family", "observation_names", "action_names", "control_period", "horizon",
    "action_low", "action_high", "reward_spec", "planner", "window", "inner_lr", "decision_steps", "train_config",
)  # fmt: skip


def build_dynamics_graph(spec: DynamicsSpec, params: list[np.ndarray], stats: DynamicsStats) -> onnx.ModelProto:
    g = Graph()
    w = weights(g, params)
    o, a = normalized(g, stats, "obs", "act")
    x = g.op("Concat", o, a, axis=1)
    inputs = [value("obs", ["N", spec.obs_dim]), value("act", ["N", spec.act_dim])]
    outputs = [value("next_obs", ["N", spec.obs_dim])]
    head = w
    if spec.kind == "recurrent":  # the head reads [x, h_next]
        x, head = g.op("Concat", x, lstm(g, w[:3], x), axis=1), w[3:]
        inputs += state(spec)
        outputs += state(spec, "_next")
    out, _, _ = mlp(g, head, x)
    delta = g.op(
        "Add", g.op("Mul", out, g.const("delta_std", stats.delta_std)), g.const("delta_mean", stats.delta_mean)
    )
    g.op("Add", "obs", delta, out="next_obs")
    inputs += [value(n, list(p.shape)) for n, p in zip(w, params, strict=True)]
    return g.model("metactl_dynamics", inputs, outputs,
                   f"metactl {spec.kind} dynamics model {spec.hidden}: next_obs = obs + predicted delta")  # fmt: skip


def build_recurrent_step_graph(spec: DynamicsSpec, params: list[np.ndarray], stats: DynamicsStats) -> onnx.ModelProto:
    """ReBAL's state update alone: (h, c) and the inputs (obs, act) of N rows -> (h_next, c_next)."""
    g = Graph()
    w = weights(g, params[:3])
    o, a = normalized(g, stats, "obs", "act")
    lstm(g, w, g.op("Concat", o, a, axis=1))
    inputs = [*state(spec), value("obs", ["N", spec.obs_dim]), value("act", ["N", spec.act_dim])]
    inputs += [value(n, list(p.shape)) for n, p in zip(w, params[:3], strict=True)]
    return g.model("metactl_recurrent_step", inputs, state(spec, "_next"), "ReBAL: the LSTM state update")


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
    inner = load_inner_params(model_path)
    if not all(np.all(np.isfinite(p)) for p in (*params, *inner)):
        raise BundleError(f"model file {model_path} holds non-finite weights; it cannot be deployed")
    adaptation = dict(extra.get("adaptation") or {})  # absent in models trained before the inner-step choice
    step = md.AdaptStep.from_extra(adaptation, model_path, extra["method"])
    graphs = {md.DYNAMICS_FILE: build_dynamics_graph(spec, params, stats)}
    if spec.kind == "mlp":
        scale = float(adaptation.get("lstm_scale", 0.0))
        graphs[md.ADAPT_FILE] = build_adapt_graph(spec, params, stats, float(extra["inner_lr"]), step, inner, scale)
    else:
        graphs[md.RECURRENT_FILE] = build_recurrent_step_graph(spec, params, stats)
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
    if adaptation:
        meta["adaptation"] = adaptation
    if planner is not None:
        meta["planner"] = dict(planner)
    write_bundle(out_dir, graphs, meta)
    return out_dir
