"""Load a model bundle (GrBAL, ReBAL, MB) on the robot and run its adaptive MPC with onnxruntime and numpy.

Nagabandi et al., ICLR 2019, Alg. 2 on the robot: every control step the newest transition reaches
the model's window of the last M, the model adapts (GrBAL: ``adapt.onnx`` maps the trained weights and
the last M transitions to adapted weights, by whichever inner step it was meta-trained with: SGD, learned
per-parameter rates, or the LSTM optimizer fed its zero state, in one or several unrolled steps; MB+DE: the
same graph on the running weights; ReBAL:
``recurrent_step.onnx`` rebuilds its state from zero over the last M), and the numpy planner of
``controllers.planners`` plans through ``dynamics.onnx``, fed the adapted weights (ReBAL: each
candidate's own state). ``ModelBundle.load`` checks files, hashes and graph signatures once.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import onnxruntime as ort

from metactl.controllers.dynamics import ForwardCost, TransitionWindow
from metactl.controllers.mpc import MPCController
from metactl.controllers.planners import Dynamics, make_planner
from metactl.deploy import metadata as md
from metactl.deploy.episodes import EpisodeRunner, Seeds
from metactl.deploy.errors import BundleError
from metactl.deploy.graphs import check_signature, open_session, read_graph

MODES = {"grbal": ("grbal", "mb"), "rebal": ("rebal", "mb"), "mb": ("mb", "mb_de")}
"""Run modes each trained method supports: its own, and the frozen ('mb') or dynamic-evaluation ablation."""


def _signatures(meta: md.ModelMetadata) -> dict[str, tuple[dict[str, int | None], dict[str, int | None]]]:
    """Graph file -> (inputs, outputs) with the last dimension each must have: what the runtime feeds and reads."""
    spec = meta.dynamics
    d, a, h = spec.obs_dim, spec.act_dim, spec.rnn_hidden
    thetas = {f"theta_{i:03d}": shape[-1] for i, shape in enumerate(spec.param_shapes())}
    state = {"h": h, "c": h} if spec.kind == "recurrent" else {}
    state_next = {"h_next": h, "c_next": h} if state else {}
    sigs = {md.DYNAMICS_FILE: ({"obs": d, "act": a, **state, **thetas}, {"next_obs": d, **state_next})}
    if spec.kind == "mlp":
        step = meta.adaptation
        hidden = step.lstm_hidden
        adapted = {f"{k}_adapted": v for k, v in thetas.items()} | {f"{s}_next": hidden for s in step.state_names()}
        learned = {"sgd": {"lr": None}, "lstm": {s: hidden for s in step.state_names()},
                   "meta_sgd": {f"{md.ALPHA_PREFIX}{k[len('theta_'):]}": v for k, v in thetas.items()}}  # fmt: skip
        sigs[md.ADAPT_FILE] = ({"w_obs": d, "w_act": a, "w_next": d, **learned[step.inner_step], **thetas}, adapted)
    else:
        lstm = dict(list(thetas.items())[:3])
        sigs[md.RECURRENT_FILE] = ({"h": h, "c": h, "obs": d, "act": a, **lstm}, {"h_next": h, "c_next": h})
    return sigs


class ModelBundle:
    """A loaded model bundle: typed metadata, spec, normalization, and one onnxruntime session per graph."""

    def __init__(self, directory: str, meta: md.ModelMetadata, sessions: dict[str, ort.InferenceSession]):
        self.directory, self.meta, self.sessions = directory, meta, sessions
        self.method: str = meta.method
        self.spec, self.stats = meta.dynamics, meta.stats
        self.obs_dim, self.act_dim = self.spec.obs_dim, self.spec.act_dim
        self.action_low, self.action_high = meta.action_low, meta.action_high

    @classmethod
    def load(cls, directory: str, meta: md.ModelMetadata | None = None) -> ModelBundle:
        """Open the bundle in ``directory`` (``meta``: its already parsed metadata): every graph's hash and
        signature checked once; ``BundleError`` naming what is wrong."""
        if meta is None:
            meta = md.guarded(md.ModelMetadata.parse, md.read_metadata_json(directory), directory)
        sessions = {}
        for name, (inputs, outputs) in _signatures(meta).items():
            sessions[name] = open_session(directory, name, read_graph(directory, name, meta.files[name]))
            check_signature(sessions[name], directory, name, inputs, outputs)
        return cls(directory, meta, sessions)

    @property
    def metadata(self) -> dict[str, Any]:
        return copy.deepcopy(self.meta.raw)

    def controller(self, seed: int, *, mode: str | None = None, adapt: bool = True) -> RobotMPC:
        """A one-robot adaptive MPC controller; ``mode`` defaults to the bundle's method (see ``MODES``)."""
        mode = self.check_mode(mode)
        model = OnnxOnlineModel(self, mode)
        planner = make_planner(self.meta.planner, self.action_low, self.action_high)
        cost = ForwardCost(self.meta.observation_names, self.meta.reward_spec)
        mpc = MPCController(model, planner, cost, np.random.default_rng(seed), adapt, hold=self.meta.decision_steps)
        return RobotMPC(mpc)

    def check_mode(self, mode: str | None) -> str:
        mode = mode or self.method
        if mode not in MODES[self.method]:
            raise BundleError(f"a {self.method} bundle runs as {MODES[self.method]}, not {mode!r}")
        return mode

    def plan(self, mode: str | None = None) -> OnlineMPCPlan:
        """Adaptation inside every episode: 'pre' frozen, each 'post' adapting at every control step."""
        return OnlineMPCPlan(self, self.check_mode(mode))


class OnlineMPCPlan:
    """Nagabandi et al.'s online adaptation on the robot: the model adapts inside every episode, so 'pre' is an
    episode with the model frozen at its trained weights and each 'post' episode adapts at every control step, on
    the same episode seed. The planner's noise is seeded per episode."""

    queries_per_step = 0
    seeds_per_step = 0

    def __init__(self, bundle: ModelBundle, mode: str):
        self.bundle, self.mode = bundle, mode
        meta = bundle.meta
        self.description = {"name": mode, "method": meta.method, "planner": dict(meta.planner), "window": meta.window,
                            "decision_steps": meta.decision_steps}  # fmt: skip
        self.params = np.zeros(0)

    def run(self, runner: EpisodeRunner, seeds: Seeds, adaptation_steps: int) -> None:
        frozen = self.bundle.controller(seeds.operator[0], mode=self.mode, adapt=False)
        runner.run("pre", frozen, seeds.evaluation, step=0)
        for step in range(1, adaptation_steps + 1):
            online = self.bundle.controller(seeds.operator[step - 1], mode=self.mode)
            runner.run("post", online, seeds.evaluation, step=step)


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
        self.window = TransitionWindow(bundle.meta.window, 1, self.spec.obs_dim, self.spec.act_dim)
        step = bundle.meta.adaptation  # the LSTM optimizer starts every adaptation from its zero state, as trained
        n = sum(int(np.prod(s)) for s in self.spec.param_shapes())
        self._zero_state = {s: np.zeros((n, step.lstm_hidden), np.float32) for s in step.state_names()}
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
        feed = {"w_obs": obs, "w_act": act, "w_next": nxt, **self._zero_state}
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
