"""``metactl bench loop``: the full robot runtime against the emulator over a pty, at 500 Hz and 1 kHz.

For each rate, an emulator process steps the MuJoCo HalfCheetah behind protocol v1 on a
pseudo-terminal, and the host runs one long episode through ``RobotSession`` — the
deadline-paced loop, onnxruntime inference (IOBinding), the safety layer, the serial
codec and the MCAP log in its background thread — exactly as ``metactl run`` does. The
emulator advances one simulated control step per command, so simulated time runs
faster than wall time here: what is measured is the loop, not the gait.

Before each rate's runtime episode, the same run paces a bare loop for as long, at the same rate, with the same
timer: it writes a COMMAND-sized frame to a pty and reads it back from an echo process (``bench.echo``), and does
nothing else. ``deadline_met_vs_bare`` and ``jitter_p99_vs_bare`` set the runtime against it, so a reader can tell
the runtime's own cost from a noisy machine: the goal is ``deadline_met_vs_bare >= 0.99`` with 0 lost frames
whenever the bare loop itself meets >= 0.99 of its deadlines (``goal_met``; None when the machine was too noisy
to judge).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from typing import Any

from metactl.deploy.report import EXIT_CODES
from metactl.emulator.launcher import emulator_process
from metactl.hardware_configs import config_path
from metactl.report import format_table
from metactl.summary import write_summary

BASE_CONFIG = config_path("serial_halfcheetah_fb")


def bench_loop(out_dir: str, *, seconds: float = 10.0, rates: Sequence[int] = (500, 1000)) -> dict[str, Any]:
    """Measure each rate for ``seconds``; the summary (1 kHz figures at the top level) also goes to disk."""
    from metactl.deploy import PolicyBundle, check_compatibility, load_hardware_config
    from metactl.deploy.run_logger import RunLogger
    from metactl.deploy.runtime import realtime_process
    from metactl.deploy.session import PolicyController, RobotSession, RunStoppedError

    os.makedirs(out_dir, exist_ok=True)
    shutil.rmtree(os.path.join(out_dir, "bundle"), ignore_errors=True)  # scratch: rebuilt every run
    base_bundle = tiny_bundle(os.path.join(out_dir, "bundle"))
    runs: dict[str, dict[str, Any]] = {}
    for rate in rates:
        run_dir = os.path.join(out_dir, f"{rate}hz")
        config_path = _config_at(rate, seconds, run_dir)
        bundle_dir = _bundle_at(base_bundle, 1.0 / rate, os.path.join(run_dir, "bundle"))
        config, bundle = load_hardware_config(config_path), PolicyBundle.load(bundle_dir)
        check_compatibility(bundle.meta, config)
        steps = round(rate * seconds)
        bare = bare_loop(rate, steps, run_dir)
        with emulator_process(config_path, run_dir) as emu:
            logger = RunLogger(os.path.join(run_dir, "run.mcap"))
            try:
                with (
                    realtime_process(),
                    RobotSession(config, port=emu.port, log_fn=logger.log, idle_fn=logger.set_budget) as session,
                ):
                    if session.link.describe()["link"] != "serial":
                        raise RuntimeError(f"the emulator on {emu.port} did not answer; see {run_dir}/emulator.log")
                    t0, status = time.perf_counter(), "completed"
                    try:
                        session.episode(PolicyController(bundle.act, bundle.params), seed=0, steps=steps)
                    except RunStoppedError as e:  # a measurement too: the loop could not keep the link up
                        status = e.reason
                    elapsed = time.perf_counter() - t0
                    timing, counters = session.timer.summary(), session.link_counters()
                    length = timing["cycles"]
            finally:
                logger.close()
        runs[str(rate)] = {
            "target_hz": rate,
            "status": status,
            "rate_hz": length / elapsed,
            "cycles": length,
            "deadline_met_fraction": timing["deadline_met_fraction"],
            "jitter_p50_ms": timing["jitter_p50_ms"],
            "jitter_p99_ms": timing["jitter_p99_ms"],
            "inference_p50_us": timing["infer_p50_us"],
            "inference_p99_us": timing["infer_p99_us"],
            "read_p50_us": timing["read_p50_us"],
            "read_p99_us": timing["read_p99_us"],
            "write_p50_us": timing["write_p50_us"],
            "write_p99_us": timing["write_p99_us"],
            "lost_frames": counters["missing_frames"] + counters["timeouts"],
            "bad_frames": counters["bad_frames"] + counters["oversized_frames"],
            "logged_messages": logger.messages_written,
            "bare_deadline_met_fraction": bare["deadline_met_fraction"],
            "bare_jitter_p99_ms": bare["jitter_p99_ms"],
            "bare_lost_frames": bare["lost_frames"],
        }
        run = runs[str(rate)]
        run["deadline_met_vs_bare"] = run["deadline_met_fraction"] / bare["deadline_met_fraction"]
        run["jitter_p99_vs_bare"] = run["jitter_p99_ms"] / bare["jitter_p99_ms"]
        judged = bare["deadline_met_fraction"] >= 0.99
        run["goal_met"] = (run["deadline_met_vs_bare"] >= 0.99 and run["lost_frames"] == 0) if judged else None
    top = runs.get("1000") or runs[str(rates[-1])]
    summary = {
        "rate_hz": top["rate_hz"],
        "deadline_met_fraction": top["deadline_met_fraction"],
        "jitter_p99_ms": top["jitter_p99_ms"],
        "lost_frames": top["lost_frames"],
        "deadline_met_vs_bare": top["deadline_met_vs_bare"],
        "jitter_p99_vs_bare": top["jitter_p99_vs_bare"],
        "goal_met": top["goal_met"],
        "runs": runs,
        "exit_code": max(EXIT_CODES[r["status"]] for r in runs.values()),  # a run that lost its link: 3
    }
    write_summary(out_dir, summary)
    keys = ("rate_hz", "deadline_met_fraction", "jitter_p50_ms", "jitter_p99_ms", "inference_p50_us",
            "inference_p99_us", "read_p50_us", "read_p99_us", "write_p50_us", "write_p99_us", "lost_frames",
            "bad_frames", "bare_deadline_met_fraction", "bare_jitter_p99_ms", "bare_lost_frames",
            "deadline_met_vs_bare", "jitter_p99_vs_bare", "goal_met", "status")  # fmt: skip
    rows = [(k, *(_cell(r[k]) for r in runs.values())) for k in keys]
    print(format_table("metactl bench loop: host <-> emulator over a pty", ("", *(f"{r} Hz" for r in runs)), rows))
    return summary


def bare_loop(rate: int, steps: int, work_dir: str) -> dict[str, Any]:
    """``steps`` cycles at ``rate`` Hz of: wait for the deadline, read back the last frame from the echo process,
    write the next; the timer's summary and ``lost_frames`` (echoes not back within 5 periods)."""
    import select
    import subprocess
    import sys

    import numpy as np
    import serial

    from metactl.deploy import protocol as pr
    from metactl.deploy.pacing import LoopTimer
    from metactl.deploy.runtime import realtime_process
    from metactl.emulator.launcher import stop_process, wait_for_file

    os.makedirs(work_dir, exist_ok=True)
    port_file, log_path = os.path.join(work_dir, "echo.port"), os.path.join(work_dir, "echo.log")
    if os.path.exists(port_file):
        os.remove(port_file)
    frame = pr.encode(pr.Command(np.zeros(6, dtype=np.float32)), 0, 0)  # the runtime's COMMAND, size for size
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "metactl.bench.echo", port_file], stdout=log_file,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        port = wait_for_file(port_file, proc, log_path, "the echo process").strip()
        ser = serial.serial_for_url(port, timeout=0, write_timeout=0.1)
        fd, timer, lost, pending = ser.fileno(), LoopTimer(1.0 / rate), 0, 0
        try:
            with realtime_process():
                timer.start()
                for _ in range(steps):
                    timer.wait()
                    deadline = time.perf_counter() + 5.0 / rate
                    while pending and (wait := deadline - time.perf_counter()) > 0:
                        if select.select([fd], [], [], wait)[0]:
                            pending = max(0, pending - len(os.read(fd, 65536)))
                    lost += pending > 0
                    pending = 0
                    timer.lap("read")
                    os.write(fd, frame)
                    pending = len(frame)
                    timer.lap("write")
        finally:
            ser.close()
    finally:
        stop_process(proc)
    return {**timer.summary(), "lost_frames": lost}


def _cell(v: Any) -> Any:
    return f"{v:.4f}" if isinstance(v, float) and v < 1 else v


def tiny_bundle(out: str) -> str:
    """A HalfCheetah policy from one tiny ES iteration: the loop's cost does not depend on its quality."""
    from metactl import train
    from metactl.deploy.export import export_bundle

    cfg = train.config_for(
        "halfcheetah_fb", iterations=1, directions=1, tasks_per_iteration=1, horizon=10, eval_every=1, eval_repeats=1
    )
    result = train.train(cfg, os.path.join(out, "train"), progress=False)
    return export_bundle(result.policy_path, os.path.join(out, "export"))


def _bundle_at(src: str, period: float, dst: str) -> str:
    """A copy of bundle ``src`` declaring control period ``period`` (metadata only; the graph is unchanged)."""
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    path = os.path.join(dst, "metadata.json")
    with open(path) as f:
        meta = json.load(f)
    meta["control_period"] = period
    with open(path, "w") as f:
        json.dump(meta, f, indent=2)
    return dst


def _config_at(rate: int, seconds: float, run_dir: str) -> str:
    """The serial HalfCheetah config at ``rate`` Hz with one episode of ``seconds``."""
    os.makedirs(run_dir, exist_ok=True)
    with open(BASE_CONFIG) as f:
        text = f.read()
    period = 1.0 / rate
    replace = {
        "period_s = 0.05": f"period_s = {period!r}",
        "# episode_steps = 200": f"episode_steps = {round(rate * seconds)}",
        "watchdog_s = 0.25": "watchdog_s = 0.05",
        "reply_timeout_s = 0.02": f"reply_timeout_s = {5 * period!r}",
        # Lost frames are counted, not fatal: a loaded machine must not cut the measurement short.
        "max_missed_replies = 2": "max_missed_replies = 20",
    }
    for old, new in replace.items():
        if old not in text:
            raise RuntimeError(f"{BASE_CONFIG} no longer contains {old!r}; update bench_loop")
        text = text.replace(old, new)
    path = os.path.join(run_dir, "robot.toml")
    with open(path, "w") as f:
        f.write(text)
    return path
