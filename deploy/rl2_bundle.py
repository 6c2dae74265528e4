"""An RL² bundle on the robot (Duan et al. 2016): the exported GRU step under onnxruntime, its hidden state carried
from episode to episode within a trial. No gradient and no parameter change on the robot: adaptation *is* the
state update, driven by the rewards the robot reports.

``RL2Plan`` runs one trial: the 'pre' episode starts from the zero state (nothing known about the task yet), and
each adaptation step is one more episode with the state carried over ('post'), all on the evaluation seed so
they are comparable. Mode ``rl2_reset`` is the ablation: the state is zeroed before every episode (no adaptation).

The policy reads the previous step's reward: the session hands it to the controller's optional ``rewarded`` hook
before each ``act`` (``deploy.session.Controller``). numpy and onnxruntime only.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import onnxruntime as ort

from metactl.deploy import metadata as md
from metactl.deploy.episodes import EpisodeRunner, Seeds
from metactl.deploy.errors import BundleError
from metactl.deploy.graphs import check_signature, open_session, read_graph

MODES = ("rl2", "rl2_reset")
"""'rl2': the state carries over the trial's episodes; 'rl2_reset': zeroed before every episode (the ablation)."""


class RL2Bundle:
    """A loaded RL² bundle: typed metadata and the GRU step's session, signature checked once."""

    def __init__(self, directory: str, meta: md.RL2Metadata, session: ort.InferenceSession):
        self.directory, self.meta, self.session = directory, meta, session
        self.obs_dim, self.act_dim, self.hidden = meta.obs_dim, meta.act_dim, meta.hidden

    @classmethod
    def load(cls, directory: str, meta: md.RL2Metadata | None = None) -> RL2Bundle:
        if meta is None:
            meta = md.guarded(md.RL2Metadata.parse, md.read_metadata_json(directory), directory)
        session = open_session(directory, md.RL2_FILE, read_graph(directory, md.RL2_FILE, meta.files[md.RL2_FILE]))
        inputs = {"obs": meta.obs_dim, "prev_action": meta.act_dim, "prev_reward": 1, "prev_done": 1, "h": meta.hidden}
        check_signature(session, directory, md.RL2_FILE, inputs, {"action": meta.act_dim, "h_next": meta.hidden})
        return cls(directory, meta, session)

    @property
    def metadata(self) -> dict[str, Any]:
        return copy.deepcopy(self.meta.raw)

    def step(self, obs: np.ndarray, prev_action: np.ndarray, prev_reward: float, prev_done: float,
             h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """One GRU step: (action [act_dim], h_next [1, H]) from obs [obs_dim], the previous action [act_dim], reward
        and done flag, and the state h [1, H]."""
        feed = {"obs": np.asarray(obs, np.float32).reshape(1, self.obs_dim),
                "prev_action": np.asarray(prev_action, np.float32).reshape(1, self.act_dim),
                "prev_reward": np.full((1, 1), prev_reward, np.float32),
                "prev_done": np.full((1, 1), prev_done, np.float32), "h": np.asarray(h, np.float32)}  # fmt: skip
        action, h_next = self.session.run(["action", "h_next"], feed)
        return action[0].astype(np.float64), h_next

    def controller(self) -> RL2Controller:
        return RL2Controller(self)

    def plan(self, mode: str | None = None) -> RL2Plan:
        mode = mode or "rl2"
        if mode not in MODES:
            raise BundleError(f"an RL² bundle runs as {MODES}, not {mode!r}")
        return RL2Plan(self, mode)


class RL2Controller:
    """``deploy.session.Controller`` of one RL² trial: the GRU state, previous action, reward and done flag persist
    across ``reset`` (an episode's start) until ``new_trial``."""

    def __init__(self, bundle: RL2Bundle):
        self.bundle = bundle
        self.new_trial()

    def new_trial(self) -> None:
        """Zero state: the start of a trial (what the policy knows about the task is forgotten)."""
        self.h = np.zeros((1, self.bundle.hidden), np.float32)
        self.prev_action = np.zeros(self.bundle.act_dim)
        self.prev_reward, self.prev_done, self.episodes = 0.0, 0.0, 0

    def reset(self) -> None:
        """An episode starts: the state is kept; the first step reads done = 1 (as in training) after the first."""
        self.prev_done = 1.0 if self.episodes else 0.0
        self.episodes += 1

    def rewarded(self, reward: float) -> None:
        """The reward of the transition just observed (the session calls this before the next ``act``)."""
        self.prev_reward = float(reward)

    def act(self, obs: np.ndarray, fresh: bool) -> np.ndarray:
        reward = self.prev_reward if fresh else 0.0  # a lost reply: its reward is unknown
        action, self.h = self.bundle.step(obs, self.prev_action, reward, self.prev_done, self.h)
        self.prev_done = 0.0
        self.prev_action = action
        return action

    def applied(self, sent: np.ndarray) -> None:
        self.prev_action = np.asarray(sent, dtype=np.float64)  # the policy reads what the robot really got


class RL2Plan:
    """One RL² trial on the robot: 'pre' = the first episode from the zero state, each adaptation step one more
    episode with the state carried over ('post'); ``params`` is the final hidden state [H] (where the adaptation
    lives). All episodes share the evaluation seed."""

    queries_per_step = 0
    seeds_per_step = 0

    def __init__(self, bundle: RL2Bundle, mode: str):
        self.bundle, self.mode = bundle, mode
        self.description = {"name": mode, "method": "rl2", "hidden": bundle.hidden,
                            "episodes_per_trial": bundle.meta.episodes_per_trial}  # fmt: skip
        self.params = np.zeros(0)

    def run(self, runner: EpisodeRunner, seeds: Seeds, adaptation_steps: int) -> None:
        controller = self.bundle.controller()
        runner.run("pre", controller, seeds.evaluation, step=0)
        for step in range(1, adaptation_steps + 1):
            if self.mode == "rl2_reset":
                controller.new_trial()
            runner.run("post", controller, seeds.evaluation, step=step)
        self.params = controller.h[0].astype(np.float64)
