"""MP4 videos of robot episodes before and after adaptation (workstation side: MuJoCo, imageio).

Every video is drawn from the episode's observations (``metactl.sim.render``), so a simulated robot, the
emulator behind a serial link and a run that failed over to simulation are shown the same way.
"""

from __future__ import annotations

import os
from typing import Any

from metactl.deploy.hardware_config import HardwareConfig
from metactl.deploy.report import OnlineReport


class VideoError(ValueError):
    """A video was asked for a robot that cannot be drawn (user-facing)."""


def scene_of(config: HardwareConfig, link: dict[str, Any]) -> tuple[str, Any]:
    """(task family, task) the robot of a run stands for: the simulated robot's, else the emulated one's."""
    if link.get("link") == "sim":
        return str(link["family"]), link["task"]
    if config.emulator is not None:
        return config.emulator.family, config.emulator.task
    raise VideoError(
        f"--video draws simulated or emulated robots; {config.path} has neither [sim] nor [emulator]: "
        "render a real robot's run from its run.mcap instead"
    )


def report_videos(report: OnlineReport, config: HardwareConfig, out_dir: str) -> dict[str, str]:
    """``video_pre.mp4`` and ``video_post_<step>.mp4`` of a ``run_online(record=True)`` report; name -> path."""
    from metactl import sim
    from metactl.deploy.sim_robot import resolve_task
    from metactl.sim.render import render_episode

    family_name, task = scene_of(config, report.link)
    family = sim.make_family(family_name)
    task = resolve_task(sim, family, task)
    videos = {}
    for record in report.episodes:
        if record.index in report.observations:
            name = "pre" if record.kind == "pre" else f"post_{record.step}"
            path = os.path.join(out_dir, f"video_{name}.mp4")
            videos[name] = render_episode(family, task, report.observations[record.index], path)
    return videos
