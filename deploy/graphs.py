"""Open a bundle's ONNX graphs on the robot: size and hash checked, one thread, signature checked.

Every graph a bundle names is read once, its sha256 compared with ``metadata.json``, and its
inputs and outputs compared with what the runtime will feed and read, so a tampered or swapped
graph fails at load time with one line, never inside the control loop. Sessions are
single-threaded and sequential: on a robot computer the control loop must not compete with a
hidden thread pool.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from metactl.deploy.errors import BundleError

MAX_GRAPH_BYTES = 512 * 2**20
"""Largest graph file a bundle may hold."""
ORT_ERRORS = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)
_FIX = "re-run `metactl export` on the trained run"


def session_options() -> ort.SessionOptions:
    """One intra-op and one inter-op thread, sequential execution, warnings silenced.

    The silenced warning is onnxruntime's note that an initializer is also a graph input, which is
    exactly what makes parameters overridable.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return opts


def read_graph(directory: str, name: str, sha256: str) -> bytes:
    """The bytes of graph ``name`` of the bundle in ``directory``, checked against ``sha256``."""
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise BundleError(f"bundle {directory}: {name} is missing; {_FIX}")
    if os.path.getsize(path) > MAX_GRAPH_BYTES:
        raise BundleError(f"bundle {directory}: {name} is larger than {MAX_GRAPH_BYTES >> 20} MiB; {_FIX}")
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise BundleError(
            f"bundle {directory}: {name} has sha256 {digest[:12]}... but metadata.json expects {sha256[:12]}... "
            f"(file corrupt or from another export); {_FIX}"
        )
    return data


def open_session(directory: str, name: str, data: bytes) -> ort.InferenceSession:
    """An onnxruntime session of graph bytes ``data``; ``BundleError`` naming the file if it cannot load."""
    try:
        return ort.InferenceSession(data, sess_options=session_options(), providers=["CPUExecutionProvider"])
    except ORT_ERRORS as e:
        first_line = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise BundleError(
            f"bundle {directory}: onnxruntime {ort.__version__} cannot load {name} ({first_line}); "
            f"upgrade onnxruntime or {_FIX}"
        ) from None


def check_signature(
    session: ort.InferenceSession,
    directory: str,
    name: str,
    inputs: Mapping[str, int | None],
    outputs: Mapping[str, int | None],
) -> None:
    """Every named input (graph inputs and overridable initializers) and output exists, as float32, and its last
    dimension is the given size (None: any)."""
    found = {a.name: a for a in (*session.get_inputs(), *session.get_overridable_initializers())}
    found_out = {a.name: a for a in session.get_outputs()}
    for kind, want, have in (("input", inputs, found), ("output", outputs, found_out)):
        for tensor, size in want.items():
            arg = have.get(tensor)
            if arg is None:
                raise BundleError(f"bundle {directory}: {name} has no {kind} {tensor!r}; {_FIX}")
            if arg.type != "tensor(float)":
                raise BundleError(f"bundle {directory}: {name} {kind} {tensor!r} is {arg.type}, not float32; {_FIX}")
            last = arg.shape[-1] if arg.shape else None
            if size is not None and last != size:
                raise BundleError(
                    f"bundle {directory}: {name} {kind} {tensor!r} should end in size {size}, found {last}; {_FIX}"
                )
