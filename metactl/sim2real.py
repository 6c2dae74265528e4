"""``metactl sim2real``: named reality gaps, each run through the real runtime over the emulator's serial link.

For each scenario an emulator process (``metactl emulate --scenario NAME``) plays the
perturbed robot behind a pseudo-terminal; the host runs ``run_online`` against it —
protocol, safety layer, pacing, MCAP log, online adaptation — and records the return
before and after adaptation. Output: a table, ``sim2real.png`` and ``summary.json``
with one entry per scenario under ``scenarios``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from metactl.deploy import load_hardware_config, run_online
from metactl.emulator.launcher import emulator_process
from metactl.report import format_table
from metactl.summary import write_summary


def run_sim2real(
    bundle: str,
    config_path: str,
    out_dir: str,
    *,
    scenarios: Sequence[str] | None = None,
    adaptation_steps: int = 1,
    seed: int = 0,
    time_scale: float = 1.0,
    video: bool = False,
) -> dict[str, Any]:
    """Run every scenario (default: all that fit the robot); the summary dict (also written to disk)."""
    from metactl.emulator.scenarios import MUJOCO_ONLY, SCENARIOS

    config = load_hardware_config(config_path)
    if config.emulator is None:
        raise ValueError(f"hardware config {config_path} has no [emulator] section; add one to run sim2real")
    if scenarios is None:
        point_robot = config.emulator.family in ("four_corners", "multi_goal_circle")
        scenarios = [s for s in SCENARIOS if not (point_robot and s in MUJOCO_ONLY)]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario {unknown[0]!r}; known: {', '.join(SCENARIOS)}")
    results: dict[str, dict[str, Any]] = {}
    for name in scenarios:
        scenario_dir = os.path.join(out_dir, name)
        with emulator_process(config_path, scenario_dir, name) as emu:
            report = run_online(
                bundle, config, port=emu.port, out_dir=scenario_dir, adaptation_steps=adaptation_steps,
                seed=seed, time_scale=time_scale, record=video,
            )  # fmt: skip
        timing = report.health.get("timing", {})
        results[name] = {
            "pre_adaptation_return": report.pre_adaptation_return,
            "post_adaptation_return": report.post_adaptation_return,
            "status": report.status,
            "episodes": len(report.episodes),
            "link": report.link.get("link"),
            "deadline_met_fraction": timing.get("deadline_met_fraction"),
            "log": os.path.join(scenario_dir, "run.mcap"),
        }
        if video:
            from metactl.videos import report_videos

            results[name]["videos"] = report_videos(report, config, scenario_dir)
    summary = {"bundle": bundle, "config": config_path, "seed": seed, "scenarios": results}
    write_summary(out_dir, summary)
    _plot(results, os.path.join(out_dir, "sim2real.png"))
    rows = [
        (n, r["pre_adaptation_return"], r["post_adaptation_return"],
         r["post_adaptation_return"] - r["pre_adaptation_return"], r["link"], r["status"])
        for n, r in results.items()
    ]  # fmt: skip
    headers = ("scenario", "return, no adaptation", "after adaptation", "gain", "link", "status")
    print(format_table(f"metactl sim2real: {config.robot.name}, bundle {bundle}", headers, rows))
    return summary


def _plot(results: dict[str, dict[str, Any]], path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(results)
    fig = Figure(figsize=(max(6, 0.8 * len(names)), 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [results[n]["pre_adaptation_return"] for n in names], 0.4, label="no adaptation")
    ax.bar([x + 0.2 for x in xs], [results[n]["post_adaptation_return"] for n in names], 0.4, label="adapted")
    ax.set_xticks(list(xs), names, rotation=30, ha="right")
    ax.set_ylabel("episode return")
    ax.set_title("sim-to-real scenarios over the emulator's serial link")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
