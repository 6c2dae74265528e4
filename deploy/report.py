"""What an online-adaptation run produced, and how it is written to disk.

Files in ``out_dir``: ``summary.json`` (returns before/after adaptation, episode count,
bundle, config and task), ``episodes.csv`` (one row per robot episode),
``adapted_params.npy`` and ``adaptation.png`` (return per episode; skipped with a
warning where matplotlib is not installed — it is not a robot dependency).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from typing import Any

import numpy as np

from metactl.summary import jsonable, write_summary

log = logging.getLogger(__name__)

EPISODE_KINDS = ("pre", "query", "post")
EXIT_CODES = {"completed": 0, "link_lost": 3, "robot_reboot": 3, "robot_fault": 4, "safety_stop": 4}
"""Run status -> the exit code of ``metactl run``: 0 completed as asked (a configured fail-over to simulation or a
reconnect included), 3 the robot link lost (or the robot rebooted) for good, 4 a safety stop (state limits, the
robot's own safe-stop, non-finite commands)."""


@dataclasses.dataclass(frozen=True)
class EpisodeRecord:
    """One robot episode.

    ``kind``: 'pre' (trained params), 'query' (a vector the operator asked for) or 'post'
    (adapted params after ``step``). ``round``/``query`` locate a query in the operator's
    schedule (-1 for pre/post). ``episode_return`` is the summed reward, ``length`` in steps.
    """

    index: int
    kind: str
    step: int
    round: int
    query: int
    seed: int
    episode_return: float
    length: int


@dataclasses.dataclass(frozen=True)
class OnlineReport:
    """Result of ``run_online``: every episode, the returns before and after each adaptation step,
    and the final adapted parameters [num_params]."""

    episodes: tuple[EpisodeRecord, ...]
    pre_adaptation_return: float
    post_adaptation_returns: tuple[float, ...]
    adapted_params: np.ndarray
    bundle_dir: str
    config_path: str
    link: dict[str, Any]
    adaptation: dict[str, Any]
    seed: int
    status: str = "completed"
    """One of ``EXIT_CODES``."""
    detail: str = ""
    """Why the run stopped (empty when it completed)."""
    failed_over: bool = False
    """The run continued (or started) on the config's [fallback] simulation."""
    events: tuple[dict[str, Any], ...] = ()
    health: dict[str, Any] = dataclasses.field(default_factory=dict)
    observations: dict[int, np.ndarray] = dataclasses.field(default_factory=dict, compare=False)
    """Episode index -> observations [length + 1, obs_dim] of the pre and post episodes (``run_online(record=...)``)."""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def post_adaptation_return(self) -> float:
        """Return of the evaluation episode after the last adaptation step (NaN if the run stopped before)."""
        return self.post_adaptation_returns[-1] if self.post_adaptation_returns else float("nan")

    def summary(self) -> dict[str, Any]:
        """The JSON-able content of ``summary.json``."""
        return {
            "pre_adaptation_return": self.pre_adaptation_return,
            "post_adaptation_return": self.post_adaptation_return,
            "post_adaptation_returns": list(self.post_adaptation_returns),
            "adaptation_steps": len(self.post_adaptation_returns),
            "episodes": len(self.episodes),
            "bundle": self.bundle_dir,
            "config": self.config_path,
            "task": self.link.get("task"),
            "link": self.link,
            "adaptation": self.adaptation,
            "seed": self.seed,
            "status": self.status,
            "detail": self.detail,
            "exit_code": self.exit_code,
            "failed_over": self.failed_over,
            "events": [jsonable(e) for e in self.events],
            **jsonable(self.health),
        }


def write_report(report: OnlineReport, out_dir: str, resolved_config: dict[str, Any]) -> None:
    """Write summary.json (with the resolved hardware config), episodes.csv, adapted_params.npy, adaptation.png."""
    os.makedirs(out_dir, exist_ok=True)
    write_summary(out_dir, {**report.summary(), "hardware_config": resolved_config})
    fields = [f.name for f in dataclasses.fields(EpisodeRecord)]
    with open(os.path.join(out_dir, "episodes.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(dataclasses.asdict(e) for e in report.episodes)
    np.save(os.path.join(out_dir, "adapted_params.npy"), report.adapted_params)
    plot_adaptation(report, os.path.join(out_dir, "adaptation.png"))


def plot_adaptation(report: OnlineReport, path: str) -> bool:
    """Return vs episode: queries as dots, pre and post evaluations marked. False if matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("matplotlib is not installed; skipping %s (pip install matplotlib to get the plot)", path)
        return False
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    styles = {"query": ("o", "tab:gray", 4), "pre": ("s", "tab:blue", 9), "post": ("*", "tab:red", 12)}
    labels = {"query": "query episodes", "pre": "pre-adaptation", "post": "post-adaptation"}
    for kind in ("query", "pre", "post"):
        rows = [e for e in report.episodes if e.kind == kind]
        if rows:
            marker, color, size = styles[kind]
            xs, ys = [e.index for e in rows], [e.episode_return for e in rows]
            ax.plot(xs, ys, marker, color=color, markersize=size, linestyle="none", label=labels[kind])
    ax.axhline(report.pre_adaptation_return, color="tab:blue", linewidth=0.8, linestyle="--")
    ax.set_xlabel("robot episode")
    ax.set_ylabel("return")
    ax.set_title(f"online adaptation ({report.adaptation.get('name', '?')}): {report.link.get('link', '?')} robot")
    if report.episodes:
        ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return True
