"""A tiny ONNX graph builder and the pieces the dynamics-model graphs share (workstation side, no torch).

Used by ``model_export`` (dynamics and recurrent-step graphs) and ``adapt_export`` (the adaptation step):
constants become initializers, every node names its output, the normalization is folded in, and the
ReLU MLP keeps its layer inputs and pre-activations for a hand-written backward pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from metactl.controllers.dynamics import DynamicsSpec, DynamicsStats
from metactl.deploy import metadata as md
from metactl.deploy.export import IR_VERSION, _version


class Graph:
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


def value(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def weights(g: Graph, params: list[np.ndarray]) -> list[str]:
    """The parameters as overridable initializers ``theta_000`` ... (also declared as graph inputs)."""
    return [g.const(f"theta_{i:03d}", p) for i, p in enumerate(params)]


def normalized(g: Graph, stats: DynamicsStats, obs: str, act: str) -> tuple[str, str]:
    o = g.op("Div", g.op("Sub", obs, g.const("obs_mean", stats.obs_mean)), g.const("obs_std", stats.obs_std))
    a = g.op("Div", g.op("Sub", act, g.const("act_mean", stats.act_mean)), g.const("act_std", stats.act_std))
    return o, a


def delta_target(g: Graph, stats: DynamicsStats, obs: str, nxt: str) -> str:
    d = g.op("Sub", g.op("Sub", nxt, obs), g.const("delta_mean", stats.delta_mean))
    return g.op("Div", d, g.const("delta_std", stats.delta_std))


def mlp(g: Graph, w: list[str], x: str) -> tuple[str, list[str], list[str]]:
    """ReLU MLP. Returns (output, layer inputs, pre-activations) for the hand-written backward pass."""
    inputs, pre = [], []
    layers = len(w) // 2
    for i in range(layers):
        inputs.append(x)
        z = g.op("Add", g.op("MatMul", x, w[2 * i]), w[2 * i + 1])
        pre.append(z)
        x = g.op("Relu", z) if i < layers - 1 else z
    return x, inputs, pre


def lstm(g: Graph, w: list[str], x: str) -> str:
    """ReBAL's LSTM step on the graph inputs h, c: writes c_next and h_next (gates i, f, g, o); returns h_next."""
    gates = g.op("Add", g.op("Add", g.op("MatMul", x, w[0]), g.op("MatMul", "h", w[1])), w[2])
    i, f, gg, og = g.op("Split", gates, outputs=4, axis=1)
    c = g.op(
        "Add", g.op("Mul", g.op("Sigmoid", f), "c"), g.op("Mul", g.op("Sigmoid", i), g.op("Tanh", gg)), out="c_next"
    )
    return g.op("Mul", g.op("Sigmoid", og), g.op("Tanh", c), out="h_next")


def state(spec: DynamicsSpec, suffix: str = "") -> list[onnx.ValueInfoProto]:
    """ReBAL's state h, c [N, H] as graph inputs (or, with ``suffix`` "_next", outputs)."""
    return [value(n + suffix, ["N", spec.rnn_hidden]) for n in ("h", "c")]
