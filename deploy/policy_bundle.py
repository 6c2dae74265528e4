"""An ES policy bundle on the robot: its graph under onnxruntime, and its adaptation episode by episode.

Song et al., "ES-MAML: Simple Hessian-Free Meta Learning", ICLR 2020: the meta-trained policy is
adapted to the task at hand by the same operator U(theta, T) used in training (ES gradient step or
hill climbing), now with real robot episodes as the queries: every parameter vector the operator
asks for is exactly one robot episode, inferred by the ONNX graph with the vector fed as ``params``.

``PolicyBundle.load`` checks everything once — metadata schema, the graph's sha256, its input and
output signature — so the control loop afterwards is a lean ``act`` call through IOBinding.

Within an episode the parameters are fixed, so episodes run ``fixed(params)``: a session of the graph
with ``params`` folded into a plain constant (``deploy.fold``), which onnxruntime constant-folds, built
between episodes (``FixedParamsController.reset``) and reused while the vector stays the same.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np
import onnxruntime as ort

from metactl.controllers import AdaptationOperator, make_operator, seed_slot_count
from metactl.deploy import metadata as md
from metactl.deploy.episodes import EpisodeRunner, Seeds
from metactl.deploy.errors import BundleError
from metactl.deploy.fold import fold_initializer
from metactl.deploy.graphs import check_signature, open_session, read_graph

log = logging.getLogger(__name__)


class PolicyBundle:
    """A loaded policy bundle: typed metadata and an onnxruntime session of the policy graph (``graph``: its bytes,
    needed for sessions with fixed parameters)."""

    def __init__(self, directory: str, meta: md.PolicyMetadata, session: ort.InferenceSession, graph: bytes = b""):
        self.directory, self.meta, self._session, self._graph = directory, meta, session, graph
        self._fixed: FixedPolicy | None = None
        self.rebuild_seconds: list[float] = []
        """How long each fixed-parameter session took to build (fold + onnxruntime session), in order."""
        self.obs_dim, self.act_dim, self.num_params = meta.obs_dim, meta.act_dim, meta.num_params
        probe = {md.OBS_INPUT: np.zeros((1, self.obs_dim), dtype=np.float32)}
        (params,) = session.run([md.PARAMS_OUTPUT], probe)
        self._params = np.asarray(params, dtype=np.float64)
        self._params.setflags(write=False)
        self._bind_hot_path()

    @classmethod
    def load(cls, directory: str, meta: md.PolicyMetadata | None = None) -> PolicyBundle:
        """Open the bundle in ``directory`` (``meta``: its already parsed metadata); ``BundleError`` saying what is
        missing or corrupt."""
        if meta is None:
            meta = md.guarded(md.PolicyMetadata.parse, md.read_metadata_json(directory), directory)
        data = read_graph(directory, md.ONNX_FILE, meta.files[md.ONNX_FILE])
        session = open_session(directory, md.ONNX_FILE, data)
        check_signature(
            session,
            directory,
            md.ONNX_FILE,
            {md.OBS_INPUT: meta.obs_dim, md.PARAMS_INPUT: meta.num_params},
            {md.ACTION_OUTPUT: meta.act_dim, md.PARAMS_OUTPUT: meta.num_params},
        )
        return cls(directory, meta, session, data)

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

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of ``metadata.json`` as read."""
        return copy.deepcopy(self.meta.raw)

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

    def fixed(self, params: np.ndarray | None = None) -> FixedPolicy:
        """A session of the policy with ``params`` (default: the trained ones) as constants: the episode's fast
        path. The last one is reused while the vector (as float32) is the same; building one takes ~2-6 ms."""
        p = np.asarray(self._params if params is None else params, dtype=np.float32)
        if p.shape != (self.num_params,):
            raise ValueError(f"params must have shape [{self.num_params}], got {list(p.shape)}")
        if self._fixed is None or not np.array_equal(self._fixed.params, p):
            t0 = time.perf_counter()
            data = fold_initializer(self._graph, md.PARAMS_INPUT, p)
            session = open_session(self.directory, md.ONNX_FILE, data)
            self._fixed = FixedPolicy(session, p, self.obs_dim, self.act_dim)
            self.rebuild_seconds.append(time.perf_counter() - t0)
            log.debug("fixed-parameter session built in %.2f ms", 1e3 * self.rebuild_seconds[-1])
        return self._fixed

    def plan(self, mode: str | None = None) -> OperatorPlan:
        """The bundle's own adaptation operator, run episode by episode (``mode`` applies to model bundles)."""
        if mode is not None:
            raise BundleError(f"bundle {self.directory} is an ES policy; --mode applies to model bundles only")
        return OperatorPlan(self, make_operator(self.meta.adaptation))


class FixedPolicy:
    """One parameter vector's session (``params`` folded in): ``act(obs [obs_dim]) -> action [act_dim]`` through
    IOBinding, float64 out as ``PolicyBundle.act``."""

    def __init__(self, session: ort.InferenceSession, params: np.ndarray, obs_dim: int, act_dim: int):
        self.params = params
        self._obs = np.zeros((1, obs_dim), dtype=np.float32)
        self._act = np.zeros((1, act_dim), dtype=np.float32)
        self._session, self._io = session, session.io_binding()
        self._io.bind_input(md.OBS_INPUT, "cpu", 0, np.float32, [1, obs_dim], self._obs.ctypes.data)
        self._io.bind_output(md.ACTION_OUTPUT, "cpu", 0, np.float32, [1, act_dim], self._act.ctypes.data)

    def act(self, obs: np.ndarray) -> np.ndarray:
        self._obs[0] = obs
        self._session.run_with_iobinding(self._io)
        return self._act[0].astype(np.float64)


class FixedParamsController:
    """A policy with fixed parameters for one episode (ES-MAML's queries and evaluations): the fixed-parameter
    session is built in ``reset`` (between episodes, off the control loop), then every step is one call."""

    def __init__(self, bundle: PolicyBundle, params: np.ndarray):
        self.bundle, self.params = bundle, params
        self._policy: FixedPolicy | None = None

    def reset(self) -> None:
        self._policy = self.bundle.fixed(self.params)

    def act(self, obs: np.ndarray, fresh: bool) -> np.ndarray:
        if self._policy is None:
            self.reset()
        return self._policy.act(obs)  # type: ignore[union-attr]

    def applied(self, sent: np.ndarray) -> None:
        pass


class OperatorPlan:
    """ES-MAML on the robot: evaluate the trained parameters (pre), then per adaptation step run the operator —
    every vector it asks for one robot episode — and evaluate the adapted parameters (post) on the pre episode's
    seed, so pre and post are comparable."""

    def __init__(self, bundle: PolicyBundle, operator: AdaptationOperator):
        self.bundle, self.operator = bundle, operator
        self.description = operator.to_dict()
        self.queries_per_step = sum(operator.schedule())
        self.seeds_per_step = seed_slot_count(operator)
        self.params = np.array(bundle.params, dtype=np.float64)

    def run(self, runner: EpisodeRunner, seeds: Seeds, adaptation_steps: int) -> None:
        runner.run("pre", FixedParamsController(self.bundle, self.params), seeds.evaluation, step=0)
        for step in range(1, adaptation_steps + 1):
            self.params = self._adapt(runner, seeds.operator[step - 1], seeds, step)
            runner.run("post", FixedParamsController(self.bundle, self.params), seeds.evaluation, step)

    def _adapt(self, runner: EpisodeRunner, op_seed: int, seeds: Seeds, step: int) -> np.ndarray:
        """One run of the operator from the current parameters. Its own work (ask, tell) runs between episodes,
        off the control loop; its time is logged."""
        operator = self.operator
        state = operator.start(self.params, op_seed)
        slot_seeds: dict[int, int] = {}  # queries with one seed slot start from one state (the operator says which)
        for rnd, n in enumerate(operator.schedule()):
            t0 = time.perf_counter()
            candidates = operator.ask(state)
            ask_s = time.perf_counter() - t0
            if len(candidates) != n:
                raise RuntimeError(
                    f"operator asked for {len(candidates)} queries in round {rnd}; its schedule says {n}"
                )
            for slot in operator.seed_slots(rnd):
                if slot not in slot_seeds:
                    slot_seeds[slot] = next(seeds.queries)
            episode_seeds = [slot_seeds[slot] for slot in operator.seed_slots(rnd)]
            returns = [
                runner.run("query", FixedParamsController(self.bundle, c), episode_seeds[q], step, rnd, q)
                for q, c in enumerate(candidates)
            ]
            t0 = time.perf_counter()
            state = operator.tell(state, np.asarray(returns))
            adapt_ms = 1e3 * (ask_s + time.perf_counter() - t0)
            runner.session.log_fn("/adaptation_step", {"step": step, "round": rnd, "queries": n, "adapt_ms": adapt_ms})
        return state.params
