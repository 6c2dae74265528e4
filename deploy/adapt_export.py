"""``adapt.onnx``: GrBAL's adaptation step as one plain ONNX inference graph, for every inner step.

Nagabandi et al., ICLR 2019: the robot adapts the model at every control step, with onnxruntime alone, so
the gradient of the window's loss L (mean squared normalized-delta error) is written out by hand (the
ReLU MLP's backward pass) and the inner step applied to it, ``steps`` times unrolled:

- ``sgd``: theta <- theta - lr g (``lr`` an overridable scalar input).
- ``meta_sgd`` (Li et al. 2017): theta <- theta - alpha_i (.) g with the learned rates ``alpha_000`` ...
  (overridable initializers of theta's shapes).
- ``lstm`` (Andrychowicz et al. 2016): theta <- theta + scale * (h1 W_out + b_out), with (h0, c0), (h1, c1) the
  two LSTM layers' states after reading LogAndSign(g) coordinatewise; the state [n, H] is a graph input
  (``opt_h0`` ...) and output (``opt_h0_next`` ...): the exported optimizer carries its state.

With ``proximal`` lambda > 0 (iMAML, Rajeswaran et al. 2019) every step's gradient is that of the proximal
inner problem, g + lambda (phi - theta), theta being the graph's input weights. Layouts match
``train.inner_steps`` exactly; parity with torch is tested at 1e-5. Workstation side (onnx, no torch).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto

from metactl.controllers.dynamics import DynamicsSpec, DynamicsStats
from metactl.deploy import metadata as md
from metactl.deploy.errors import BundleError
from metactl.deploy.graph_builder import Graph, delta_target, mlp, normalized, value, weights

LOG_SIGN_K = 5.0
"""LogAndSign's k (``train.inner_steps.LOG_SIGN_K``)."""
EPS = float(np.finfo(np.float32).eps)


def _mse_grad(g: Graph, w: list[str], x: str, target: str) -> list[str]:
    """Gradient of mean((mlp(w, x) - target)^2) with respect to every weight, by the hand-written backward pass."""
    out, xs, zs = mlp(g, w, x)
    diff = g.op("Sub", out, target)
    count = g.op("Cast", g.op("Size", diff), to=TensorProto.FLOAT)
    grad = g.op("Div", g.op("Mul", diff, "two"), count)  # dL/d(out), L = mean(diff^2)
    grads = [""] * len(w)
    for i in reversed(range(len(w) // 2)):
        grads[2 * i] = g.op("MatMul", g.op("Transpose", xs[i], perm=[1, 0]), grad)
        grads[2 * i + 1] = g.op("ReduceSum", grad, "axes_0", keepdims=0)
        if i > 0:  # through the ReLU of layer i-1: gradient where its pre-activation was > 0 (as torch)
            g_x = g.op("MatMul", grad, g.op("Transpose", w[2 * i], perm=[1, 0]))
            grad = g.op("Mul", g_x, g.op("Cast", g.op("Greater", zs[i - 1], "zero"), to=TensorProto.FLOAT))
    return grads


def _tanh(g: Graph, x: str) -> str:
    """tanh(x) = 2 sigmoid(2x) - 1, the formula ``train.inner_steps.fast_tanh`` uses."""
    return g.op("Sub", g.op("Mul", g.op("Sigmoid", g.op("Mul", x, "two")), "two"), "one")


def _lstm_cell(g: Graph, w: list[list[str]], x: str, h: str, c: str) -> tuple[str, str]:
    """``train.inner_steps.lstm_cell``: x [n, in], h, c [n, H]; w = per gate (i, f, g, o) its W_x, W_h, b."""
    i, f, gg, o = (g.op("Add", g.op("Add", g.op("MatMul", x, wx), g.op("MatMul", h, wh)), b) for wx, wh, b in w)
    c = g.op("Add", g.op("Mul", g.op("Sigmoid", f), c), g.op("Mul", g.op("Sigmoid", i), _tanh(g, gg)))
    return g.op("Mul", g.op("Sigmoid", o), _tanh(g, c)), c


def _lstm_weights(g: Graph, inner: list[np.ndarray]) -> list:
    """The LSTM optimizer's parameters (``LSTMOptimizer.param_shapes`` order) as constants, split per gate."""
    layers = [[[g.const(f"phi_l{layer}_{kind}{k}", inner[3 * layer + j][k]) for j, kind in enumerate("xhb")]
               for k in range(4)] for layer in range(2)]  # fmt: skip
    return [*layers, g.const("phi_out_w", inner[6]), g.const("phi_out_b", inner[7])]


def _lstm_update(
    g: Graph, cur: list[str], grads: list[str], phi: list, state: list[str], shapes: list[tuple], scale: float
) -> tuple[list[str], list[str]]:
    """theta + the LSTM optimizer's update of all coordinates at once; returns (new weights, new state)."""
    flat = g.op("Concat", *[g.op("Reshape", gi, "column") for gi in grads], axis=0)  # [n, 1]
    log = g.op("Max", g.op("Div", g.op("Log", g.op("Add", g.op("Abs", flat), "eps")), "log_k"), "minus_one")
    sign = g.op("Clip", g.op("Mul", flat, "exp_k"), "minus_one", "one")
    h0, c0 = _lstm_cell(g, phi[0], g.op("Concat", log, sign, axis=1), state[0], state[1])
    h1, c1 = _lstm_cell(g, phi[1], h0, state[2], state[3])
    step = g.op("Mul", g.op("Add", g.op("MatMul", h1, phi[2]), phi[3]), "scale")  # [n, 1]
    pieces = g.op("Split", step, "sizes", outputs=len(cur), axis=0) if len(cur) > 1 else [step]
    new = [g.op("Add", p, g.op("Reshape", s, f"shape_{k}")) for k, (p, s) in enumerate(zip(cur, pieces, strict=True))]
    return new, [h0, c0, h1, c1]


def build_adapt_graph(
    spec: DynamicsSpec,
    params: list[np.ndarray],
    stats: DynamicsStats,
    lr: float,
    step: md.AdaptStep | None = None,
    inner: list[np.ndarray] | None = None,
    lstm_scale: float = 0.01,
) -> onnx.ModelProto:
    """The adaptation graph of an MLP model: ``step`` (default one SGD step) with the inner step's learned
    parameters ``inner`` (Meta-SGD: rates of theta's shapes; LSTM: ``LSTMOptimizer.param_shapes`` order)."""
    if spec.kind != "mlp":
        raise BundleError("the gradient adaptation step exists for MLP dynamics models only")
    step, inner = step or md.AdaptStep(), inner or []
    g = Graph()
    w = weights(g, params)
    shapes = [tuple(p.shape) for p in params]
    g.const("two", 2.0)
    g.const("zero", 0.0)
    g.const("axes_0", [0], np.int64)
    if step.proximal:
        g.const("lam", step.proximal)
    if step.inner_step == "lstm":
        constants = {"eps": EPS, "log_k": LOG_SIGN_K, "minus_one": -1.0, "one": 1.0, "exp_k": math.exp(LOG_SIGN_K),
                     "scale": lstm_scale}  # fmt: skip
        for name, val in constants.items():
            g.const(name, val)
        g.const("column", [-1, 1], np.int64)
        g.const("sizes", [int(np.prod(s)) for s in shapes], np.int64)
        for k, shape in enumerate(shapes):
            g.const(f"shape_{k}", shape, np.int64)
    inputs = [value("w_obs", ["M", spec.obs_dim]), value("w_act", ["M", spec.act_dim]),
              value("w_next", ["M", spec.obs_dim])]  # fmt: skip
    n = sum(int(np.prod(s)) for s in shapes)
    learned, state = [], list(step.state_names())
    if step.inner_step == "sgd":
        inputs.append(value(g.const("lr", lr), []))
    elif step.inner_step == "meta_sgd":
        learned = [g.const(f"{md.ALPHA_PREFIX}{i:03d}", a) for i, a in enumerate(inner)]
        inputs += [value(a, list(s)) for a, s in zip(learned, shapes, strict=True)]
    else:
        learned = _lstm_weights(g, inner)
        inputs += [value(s, [n, step.lstm_hidden]) for s in state]
    o, a = normalized(g, stats, "w_obs", "w_act")
    x = g.op("Concat", o, a, axis=1)
    target = delta_target(g, stats, "w_obs", "w_next")
    cur = list(w)
    for _ in range(step.steps):
        grads = _mse_grad(g, cur, x, target)
        if step.proximal:
            grads = [g.op("Add", gi, g.op("Mul", g.op("Sub", c, t), "lam"))
                     for gi, c, t in zip(grads, cur, w, strict=True)]  # fmt: skip
        if step.inner_step == "sgd":
            cur = [g.op("Sub", c, g.op("Mul", gi, "lr")) for c, gi in zip(cur, grads, strict=True)]
        elif step.inner_step == "meta_sgd":
            cur = [g.op("Sub", c, g.op("Mul", gi, al)) for c, gi, al in zip(cur, grads, learned, strict=True)]
        else:
            cur, state = _lstm_update(g, cur, grads, learned, state, shapes, lstm_scale)
    outputs = [g.op("Identity", c, out=f"{t}_adapted") for c, t in zip(cur, w, strict=True)]
    for s, name in zip(state, step.state_names(), strict=True):
        g.op("Identity", s, out=f"{name}_next")
    inputs += [value(t, list(s)) for t, s in zip(w, shapes, strict=True)]
    outs = [value(o, list(s)) for o, s in zip(outputs, shapes, strict=True)]
    outs += [value(f"{s}_next", [n, step.lstm_hidden]) for s in step.state_names()]
    doc = f"GrBAL adaptation: {step.steps} x {step.inner_step} step(s) on L(theta; window), proximal {step.proximal}"
    return g.model("metactl_adapt", inputs, outs, doc)
