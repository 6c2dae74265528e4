"""Load an export bundle on the robot and run its policy with onnxruntime.

``Bundle.load`` checks everything once — files present, metadata schema, the ONNX
file's sha256, the graph's input/output shapes — so the control loop afterwards is
a lean ``act`` call. The session is single-threaded and sequential: on a robot
computer the control loop must not compete with a hidden thread pool.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from deploy import metadata as md
from deploy.errors import BundleError

_FIX = "re-run `metactl export` on the trained policy.npz"
_ORT_ERRORS = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)


def session_options() -> ort.SessionOptions:
    """One intra-op and one inter-op thread, sequential execution, warnings silenced.

    The silenced warning is onnxruntime's note that ``params`` is an initializer that is
    also a graph input, which is exactly what makes it overridable.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return opts


class Bundle:
    """A loaded bundle: the metadata dict and an onnxruntime session of the policy graph."""

    def __init__(self, directory: str, metadata: dict[str, Any], session: ort.InferenceSession):
        self.directory = directory
        self._metadata = metadata
        self._session = session
        self.obs_dim: int = metadata["obs_dim"]
        self.act_dim: int = metadata["act_dim"]
        self.num_params: int = metadata["num_params"]
        probe = {md.OBS_INPUT: np.zeros((1, self.obs_dim), dtype=np.float32)}
        (params,) = session.run([md.PARAMS_OUTPUT], probe)
        self._params = np.asarray(params, dtype=np.float64)
        self._params.setflags(write=False)
        self._bind_hot_path()

    def _bind_hot_path(self) -> None:
        """IOBinding for one observation: fixed float32 buffers bound once, so a control step copies the
        observation in, runs, and reads the action out — no feed dict, no output allocation."""
        self._obs_buf = np.zeros((1, self.obs_dim), dtype=np.float32)
        self._params_buf = self._params.astype(np.float32)
        self._act_buf = np.zeros((1, self.act_dim), dtype=np.float32)
        io = self._session.io_binding()
        for name, buf in ((md.OBS_INPUT, self._obs_buf), (md.PARAMS_INPUT, self._params_buf)):
            io.bind_input(name, "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)
        io.bind_output(md.ACTION_OUTPUT, "cpu", 0, np.float32, list(self._act_buf.shape), self._act_buf.ctypes.data)
        self._io = io

    @classmethod
    def load(cls, directory: str) -> Bundle:
        """Open the bundle in ``directory``; raise ``BundleError`` saying what is missing or corrupt."""
        if not os.path.isdir(directory):
            raise BundleError(f"bundle directory {directory} not found; create it with `metactl export`")
        meta_path = os.path.join(directory, md.METADATA_FILE)
        if not os.path.isfile(meta_path):
            raise BundleError(f"bundle {directory}: {md.METADATA_FILE} is missing; {_FIX}")
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"bundle {directory}: {md.METADATA_FILE} is not valid JSON ({e}); {_FIX}") from None
        md.validate_metadata(meta, directory)
        onnx_path = os.path.join(directory, meta["onnx_file"])
        if not os.path.isfile(onnx_path):
            raise BundleError(f"bundle {directory}: {meta['onnx_file']} is missing; {_FIX}")
        with open(onnx_path, "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta["onnx_sha256"]:
            raise BundleError(
                f"bundle {directory}: {meta['onnx_file']} has sha256 {digest[:12]}... but metadata.json expects "
                f"{meta['onnx_sha256'][:12]}... (file corrupt or from another export); {_FIX}"
            )
        try:
            session = ort.InferenceSession(data, sess_options=session_options(), providers=["CPUExecutionProvider"])
        except _ORT_ERRORS as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BundleError(
                f"bundle {directory}: onnxruntime {ort.__version__} cannot load {meta['onnx_file']} ({first_line}); "
                f"upgrade onnxruntime or {_FIX}"
            ) from None
        _check_graph(session, meta, directory)
        return cls(directory, meta, session)

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of ``metadata.json`` (signal names, sizes, control period, operator, ...)."""
        return copy.deepcopy(self._metadata)

    @property
    def params(self) -> np.ndarray:
        """The trained parameter vector [num_params], float64 (read-only; read from the graph's initializer)."""
        return self._params

    def act(self, obs: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
        """Actions for raw observations ``obs`` [obs_dim] -> [act_dim] or [N, obs_dim] -> [N, act_dim] (float64).

        ``params`` [num_params] replaces the trained parameters for this call (one vector for all rows).
        The graph computes in float32: observations and parameters are cast on the way in.
        """
        if np.ndim(obs) == 1 and np.size(obs) == self.obs_dim:
            return self._act_one(obs, params)
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        batch = obs[None] if single else obs
        if batch.ndim != 2 or batch.shape[1] != self.obs_dim:
            raise ValueError(f"obs must have shape [{self.obs_dim}] or [N, {self.obs_dim}], got {list(obs.shape)}")
        feed = {md.OBS_INPUT: batch}
        if params is not None:
            p = np.asarray(params, dtype=np.float32)
            if p.shape != (self.num_params,):
                raise ValueError(f"params must have shape [{self.num_params}], got {list(p.shape)}")
            feed[md.PARAMS_INPUT] = p
        (action,) = self._session.run([md.ACTION_OUTPUT], feed)
        action = action.astype(np.float64)
        return action[0] if single else action

    def _act_one(self, obs: np.ndarray, params: np.ndarray | None) -> np.ndarray:
        """The control-loop path: one observation through the bound buffers."""
        self._obs_buf[0] = obs
        p = self._params if params is None else np.asarray(params)
        if p.shape != (self.num_params,):
            raise ValueError(f"params must have shape [{self.num_params}], got {list(p.shape)}")
        self._params_buf[:] = p
        self._session.run_with_iobinding(self._io)
        return self._act_buf[0].astype(np.float64)


def _check_graph(session: ort.InferenceSession, meta: dict[str, Any], directory: str) -> None:
    """The graph's inputs and outputs must have the names and sizes the metadata promises."""
    expected = {
        md.OBS_INPUT: [meta["obs_dim"]],
        md.PARAMS_INPUT: [meta["num_params"]],
        md.ACTION_OUTPUT: [meta["act_dim"]],
        md.PARAMS_OUTPUT: [meta["num_params"]],
    }
    args = [*session.get_inputs(), *session.get_overridable_initializers(), *session.get_outputs()]
    found = {a.name: a.shape[-1:] for a in args}
    for name, size in expected.items():
        if found.get(name) != size:
            raise BundleError(
                f"bundle {directory}: graph tensor '{name}' should end in size {size[0]}, "
                f"found {found.get(name, 'no such tensor')}; {_FIX}"
            )
