"""Load a model bundle (GrBAL, ReBAL, MB) on the robot and run its adaptive MPC with onnxruntime and numpy.

Nagabandi et al., ICLR 2019, Alg. 2 on the robot: every control step the newest transition reaches
the model's window of the last M, the model adapts (GrBAL: ``adapt.onnx`` maps the trained weights and
the last M transitions to adapted weights; MB+DE: the same graph on the running weights; ReBAL:
``recurrent_step.onnx`` rebuilds its state from zero over the last M), and the numpy planner of
``controllers.planners`` plans through ``dynamics.onnx``, fed the adapted weights (ReBAL: each
candidate's own state). ``ModelBundle.load`` checks files, hashes and graph signatures once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort

from controllers.dynamics import DynamicsSpec, DynamicsStats, ForwardCost, TransitionWindow
from controllers.mpc import MPCController
from controllers.planners import Dynamics, make_planner
from deploy import metadata as md
from deploy.bundle import _ORT_ERRORS, session_options
from deploy.errors import BundleError

_FIX = "re-run `metactl export` on the trained model.npz"
MODES = {"grbal": ("grbal", "mb"), "rebal": ("rebal", "mb"), "mb": ("mb", "mb_de")}
"""Run modes each trained method supports: its own, and the frozen ('mb') or dynamic-evaluation ablation."""


def read_metadata(directory: str) -> dict[str, Any]:
    """``metadata.json`` of the bundle in ``directory`` (not yet validated); ``BundleError`` if unreadable."""
    if not os.path.isdir(directory):
        raise BundleError(f"bundle directory {directory} not found; create it with `metactl export`")
    path = os.path.join(directory, md.METADATA_FILE)
    if not os.path.isfile(path):
        raise BundleError(f"bundle {directory}: {md.METADATA_FILE} is missing; re-run `metactl export`")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"bundle {directory}: {md.METADATA_FILE} is not valid JSON ({e})") from None


class ModelBundle:
    """A loaded model bundle: metadata, spec, normalization, and one onnxruntime session per graph."""

    def __init__(self, directory: str, meta: dict[str, Any], sessions: dict[str, ort.InferenceSession]):
        self.directory, self._metadata, self.sessions = directory, meta, sessions
        self.method: str = meta["method"]
        self.spec = DynamicsSpec.from_dict(meta["dynamics"])
        self.stats = DynamicsStats.from_dict(meta["stats"])
        self.obs_dim, self.act_dim = self.spec.obs_dim, self.spec.act_dim
        self.action_low = np.asarray(meta["action_low"], dtype=np.float64)
        self.action_high = np.asarray(meta["action_high"], dtype=np.float64)

    @classmethod
    def load(cls, directory: str) -> ModelBundle:
        meta = read_metadata(directory)
        md.validate_model_metadata(meta, directory)
        sessions = {}
        for name, digest in meta["files"].items():
            path = os.path.join(directory, name)
            if not os.path.isfile(path):
                raise BundleError(f"bundle {directory}: {name} is missing; {_FIX}")
            with open(path, "rb") as f:
                data = f.read()
            if hashlib.sha256(data).hexdigest() != digest:
                raise BundleError(f"bundle {directory}: {name} does not match its sha256 in metadata.json; {_FIX}")
            try:
                sessions[name] = ort.InferenceSession(data, session_options(), providers=["CPUExecutionProvider"])
            except _ORT_ERRORS as e:
                raise BundleError(
                    f"bundle {directory}: onnxruntime cannot load {name} ({str(e)[:200]}); {_FIX}"
                ) from None
        bundle = cls(directory, meta, sessions)
        bundle._check_graphs()
        return bundle

    def _check_graphs(self) -> None:
        dyn = {a.name: a.shape for a in self.sessions[md.DYNAMICS_FILE].get_inputs()}
        want = {"obs": self.obs_dim, "act": self.act_dim}
        if self.spec.kind == "recurrent":  # ReBAL steps each candidate's own state
            want |= {"h": self.spec.rnn_hidden, "c": self.spec.rnn_hidden}
        for name, size in want.items():
            if name not in dyn or dyn[name][-1] != size:
                raise BundleError(f"bundle {self.directory}: dynamics.onnx input {name!r} should end in {size}; {_FIX}")

    @property
    def metadata(self) -> dict[str, Any]:
        return copy.deepcopy(self._metadata)

    def controller(self, seed: int, *, mode: str | None = None, adapt: bool = True) -> RobotMPC:
        """A one-robot adaptive MPC controller; ``mode`` defaults to the bundle's method (see ``MODES``)."""
        mode = mode or self.method
        if mode not in MODES[self.method]:
            raise BundleError(f"a {self.method} bundle runs as {MODES[self.method]}, not {mode!r}")
        model = OnnxOnlineModel(self, mode)
        planner = make_planner(self._metadata["planner"], self.action_low, self.action_high)
        cost = ForwardCost(self._metadata["observation_names"], self._metadata["reward_spec"])
        return RobotMPC(MPCController(model, planner, cost, np.random.default_rng(seed), adapt))


class OnnxOnlineModel:
    """``controllers.mpc.OnlineDynamics`` for one robot (E = 1) on the bundle's graphs."""

    def __init__(self, bundle: ModelBundle, mode: str):
        self.mode, self.spec = mode, bundle.spec
        self._dyn = bundle.sessions[md.DYNAMICS_FILE]
        self._adapt = bundle.sessions.get(md.ADAPT_FILE)
        self._step = bundle.sessions.get(md.RECURRENT_FILE)
        n = len(self.spec.param_shapes())
        self._names = [f"theta_{i:03d}" for i in range(n)]
        self._adapted = [f"{k}_adapted" for k in self._names]
        self.window = TransitionWindow(int(bundle.metadata["window"]), 1, self.spec.obs_dim, self.spec.act_dim)
        self.reset()

    def reset(self) -> None:
        self.window.clear()
        self.refused = 0  # adaptation steps refused because they were not finite
        self.weights: dict[str, np.ndarray] | None = None  # None: the trained weights (the graphs' initializers)
        h = max(self.spec.rnn_hidden, 1)
        self.h, self.c = np.zeros((1, h), np.float32), np.zeros((1, h), np.float32)

    def observe(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> None:
        self.window.push(obs, act, next_obs)

    def adapt(self) -> None:
        if self.mode == "mb" or self.window.count == 0:
            return
        obs, act, nxt = (_f32(a[0]) for a in self.window.arrays())
        if self.mode == "rebal":  # the state is rebuilt from zero over the last M transitions, as trained
            h, c = np.zeros_like(self.h), np.zeros_like(self.c)
            for o, a in zip(obs, act, strict=True):
                h, c = self._step.run(["h_next", "c_next"], {"h": h, "c": c, "obs": o[None], "act": a[None]})
            self.h, self.c = h, c
            return
        feed = {"w_obs": obs, "w_act": act, "w_next": nxt}
        if self.mode == "mb_de" and self.weights is not None:
            feed |= self.weights  # dynamic evaluation: keep stepping the running weights
        adapted = self._adapt.run(self._adapted, feed)
        if all(np.isfinite(w).all() for w in adapted):
            self.weights = dict(zip(self._names, adapted, strict=True))
        else:  # a step that is not finite is refused: MB+DE keeps its running weights, GrBAL the trained ones
            self.refused += 1
            if self.mode == "grbal":
                self.weights = None

    def rollout(self) -> Dynamics:
        if self.mode != "rebal":
            return self.predict
        state: dict[str, np.ndarray] = {}  # this rollout's per-candidate h, c [N, H]

        def step(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
            if not state:  # every candidate starts from the robot's state
                state["h"], state["c"] = (np.repeat(s, obs.shape[1], axis=0) for s in (self.h, self.c))
            feed = {"obs": _f32(obs[0]), "act": _f32(act[0]), "h": state["h"], "c": state["c"]}
            nxt, state["h"], state["c"] = self._dyn.run(["next_obs", "h_next", "c_next"], feed)
            return nxt[None].astype(np.float64)

        return step

    def predict(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        """One step of the adapted model (E = 1): next observations [1, N, d] of obs [1, N, d], act [1, N, a]."""
        if self.mode == "rebal":
            return self.rollout()(obs, act)
        feed = {"obs": _f32(obs[0]), "act": _f32(act[0])}
        if self.weights is not None:
            feed |= self.weights
        (nxt,) = self._dyn.run(["next_obs"], feed)
        return nxt[None].astype(np.float64)


class RobotMPC:
    """``deploy.session.Controller`` over an E = 1 ``MPCController``: adapt + plan at every control step."""

    def __init__(self, mpc: MPCController):
        self.mpc = mpc

    def reset(self) -> None:
        self.mpc.reset()

    def act(self, obs: np.ndarray, fresh: bool) -> np.ndarray:
        return self.mpc.act(np.asarray(obs, dtype=np.float64)[None], fresh)[0]

    def applied(self, sent: np.ndarray) -> None:
        self.mpc.applied(np.asarray(sent)[None])


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)
