"""``metactl bench faults``: the runtime against an emulated robot that reboots, whose link flaps, that sends
garbage and answers late, at 10x real time, for an hour of robot time or more.

Each run starts a fresh emulator process (``metactl emulate --fault ... --time-scale``) with a few faults at random
robot times and runs ``run_online`` against it, paced at the same scale. The runs take the three configured
responses in turn: reconnect (``serial.reconnect_s``), fail over to the simulation (``fallback.on_link_loss =
"sim"``), or stop. Measured, from the emulator's timeline (the robot's clock) and the run's MCAP log (the host's):

- per fault: whether it needed a safe stop (the host reported ``link_lost``, ``robot_reboot`` or ``robot_fault``,
  or the robot's watchdog fired, before the next fault) or was absorbed (garbage counted and skipped, an answer
  late but within the reply timeout); and the time to safe stop: from the fault to the end of commanded motion
  (SAFE_STOP, the watchdog, or a RESET), in control periods; 0 when the motors were not moving (a reboot leaves
  them unpowered, unless a command already on the wire reaches the rebooted robot and moves them again);
- per run: its status, whether it failed over, and lost log records (records the runtime logged that an
  independent reader of the file does not find, less those the logger declared dropped), which must be 0;
- COMMANDs a rebooted robot received before the host RESET it and that the host sent after the robot announced the
  reboot (frames carry the sender's monotonic clock, which both processes share), which must be 0; those already on
  the wire when it rebooted are counted apart (no host can recall them).

Robot time counts only commanded control steps (COMMANDs the robot applied, times the control period).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from typing import Any

import numpy as np

from metactl.report import format_table
from metactl.summary import write_summary

RESPONSES = ("reconnect", "fallback", "stop")
FAILURE_CODES = ("link_lost", "robot_reboot", "robot_fault")
"""The host's ``/fault`` codes that mean it safe-stopped the robot because of the link or the robot."""
PROVOKED_S = 1.0
"""A watchdog trip within this long [robot s] after a fault ends counts as the fault's."""
FAULT_WINDOW_S = 100.0
"""Faults fall in a run's first 100 s of robot time: one adaptation step of the test bundle is ten 10 s episodes,
then one more."""


def bench_faults(
    out_dir: str,
    *,
    robot_hours: float = 1.0,
    time_scale: float = 10.0,
    faults_per_run: int = 4,
    adapt_steps: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Runs until ``robot_hours`` of commanded robot time; the table and ``summary.json`` (see the module doc)."""
    from tqdm import tqdm

    from metactl.bench.loop import tiny_bundle

    os.makedirs(out_dir, exist_ok=True)
    shutil.rmtree(os.path.join(out_dir, "runs"), ignore_errors=True)  # scratch: rebuilt every time
    bundle = tiny_bundle(os.path.join(out_dir, "bundle"))
    rng = random.Random(seed)
    load_start = os.getloadavg()[0]
    runs: list[dict[str, Any]] = []
    robot_s, target_s = 0.0, robot_hours * 3600.0
    bar = tqdm(total=round(target_s), desc="bench faults", unit="robot s")
    while robot_s < target_s:
        index = len(runs)
        run = _one_run(bundle, os.path.join(out_dir, "runs", f"{index:04d}"), RESPONSES[index % len(RESPONSES)],
                       _draw_faults(rng, faults_per_run), time_scale, adapt_steps, seed + index)  # fmt: skip
        runs.append(run)
        robot_s += run["robot_s"]
        bar.update(min(round(run["robot_s"]), round(target_s) - bar.n))
    bar.close()
    load = {"load_avg_start": load_start, "load_avg_end": os.getloadavg()[0]}  # how busy the machine was
    summary = {**_summarize(runs, robot_s, time_scale), **load}
    write_summary(out_dir, {**summary, "runs": runs})
    _print(summary)
    failed = [name for name in ("lost_log_records", "commands_after_reboot", "safe_stops_unmeasured") if summary[name]]
    if failed:  # exit code 1: the runtime broke a promise this benchmark checks
        print(f"metactl bench faults: check failed: {', '.join(f'{n} = {summary[n]}' for n in failed)} (want 0)",
              file=sys.stderr)  # fmt: skip
    return summary


def _draw_faults(rng: random.Random, count: int) -> list[str]:
    """``count`` fault specs at random robot times within ``FAULT_WINDOW_S`` of a run's start."""
    specs = []
    for at in sorted(rng.uniform(1.0, FAULT_WINDOW_S) for _ in range(count)):
        kind = rng.choice(("reboot", "flap", "garbage", "delay"))
        if kind == "reboot":
            specs.append(f"reboot@{at:.2f}")
        elif kind == "flap":  # from a blip the host rides out to a connector out for seconds
            specs.append(f"flap@{at:.2f}:{rng.choice((0.01, 0.05, 0.3, 1.0, 3.0))}")
        elif kind == "garbage":
            specs.append(f"garbage@{at:.2f}:{rng.choice((8, 64, 512, 4096))}")
        else:  # late answers [ms of robot time]: within the reply timeout, or well beyond it
            specs.append(f"delay@{at:.2f}:{rng.choice((0.5, 2.0))}:{rng.choice((10, 60, 400))}")
    return specs


def _one_run(
    bundle: str, run_dir: str, response: str, faults: list[str], time_scale: float, adapt_steps: int, seed: int
) -> dict[str, Any]:
    from metactl.deploy import run_online
    from metactl.deploy.mcap_reader import read_messages
    from metactl.emulator.launcher import emulator_process

    config = _config(run_dir, response)
    stats_file = os.path.join(run_dir, "emulator.json")
    out = os.path.join(run_dir, "out")
    with emulator_process(config, run_dir, faults=tuple(faults), time_scale=time_scale, stats_file=stats_file) as emu:
        report = run_online(bundle, config, port=emu.port, out_dir=out, adaptation_steps=adapt_steps, seed=seed,
                            time_scale=time_scale, progress=False)  # fmt: skip
    with open(stats_file) as f:
        robot = json.load(f)
    log = read_messages(os.path.join(out, "run.mcap"))
    counts = report.health["log"]
    in_file = sum(len(records) for records in log.values())
    host_failures = [r["log_time_ns"] * 1e-9 for r in log.get("/fault", ())
                     if r.get("source") == "runtime" and r.get("code") in FAILURE_CODES]  # fmt: skip
    switched = [r["log_time_ns"] * 1e-9 for r in log.get("/link", ()) if r.get("event") == "switch_to_sim"]
    left_at = switched[0] if switched else host_failures[-1] if report.status != "completed" else np.inf
    period = 0.05  # the serial HalfCheetah's control period (checked in _config)
    return {
        "response": response,
        "faults": faults,
        "status": report.status,
        "failed_over": report.failed_over,
        "reconnects": report.health.get("reconnects", 0),
        "episodes": len(report.episodes),
        "robot_s": robot["commands"] * period,
        "lost_log_records": counts["records"] - in_file - counts["dropped"],
        "logger_counts": counts,
        "commands_after_reboot": robot["commands_after_reboot"],
        "commands_in_flight_at_reboot": robot["commands_in_flight_at_reboot"],
        "unprovoked_watchdog_trips": _unprovoked_watchdogs(robot["timeline"]),
        "per_fault": _per_fault(robot["timeline"], host_failures, left_at, period),
    }


def _per_fault(
    timeline: list[dict[str, Any]], host_failures: list[float], left_at: float, period: float
) -> list[dict[str, Any]]:
    """For each fault injected while the host used the robot (before ``left_at``, when it failed over or ended
    the run): did it need a safe stop, and how long (control periods) until commanded motion ended."""
    faults = [e for e in timeline if e["event"] == "fault" and e["wall"] < left_at]
    out = []
    for i, fault in enumerate(faults):
        end_wall = faults[i + 1]["wall"] if i + 1 < len(faults) else np.inf
        end_t = faults[i + 1]["t"] if i + 1 < len(faults) else np.inf
        detected = any(fault["wall"] <= w < end_wall for w in host_failures)
        watchdog = any(e["event"] == "disarm" and e["cause"] == "watchdog" and fault["t"] <= e["t"] < end_t
                       for e in timeline)  # fmt: skip
        row: dict[str, Any] = {"spec": fault["spec"], "kind": fault["kind"], "stopped": detected or watchdog}
        if row["stopped"]:
            ends = [e["t"] for e in timeline if e["event"] == "disarm" and e["t"] >= fault["t"]]
            moving = fault["armed"]
            if fault["kind"] == "reboot":  # unpowered by the reboot, moving again if a command was on the wire
                moving = any(e["event"] == "armed_after_reboot" and fault["t"] <= e["t"] < end_t for e in timeline)
            row["to_safe_stop_periods"] = 0.0 if not moving else (min(ends) - fault["t"]) / period if ends else None
        out.append(row)
    return out


def _unprovoked_watchdogs(timeline: list[dict[str, Any]]) -> int:
    """Watchdog trips more than ``PROVOKED_S`` after every fault's end: the host's loop itself stalled (a loaded
    machine at 10x real time leaves a 25 ms watchdog little slack)."""
    faults = [(e["t"], e["t"] + e["duration"] + PROVOKED_S) for e in timeline if e["event"] == "fault"]
    trips = [e["t"] for e in timeline if e["event"] == "disarm" and e["cause"] == "watchdog"]
    return sum(not any(a <= t <= b for a, b in faults) for t in trips)


def _config(run_dir: str, response: str) -> str:
    """The shipped serial HalfCheetah config with 200-step episodes and the run's response to a failure."""
    from metactl.hardware_configs import config_path

    with open(config_path("serial_halfcheetah_fb")) as f:
        text = f.read()
    replace = {
        "period_s = 0.05": "period_s = 0.05",  # a check: robot time is counted at this period
        "# episode_steps = 200": "episode_steps = 200",
        "max_missed_replies = 2": "max_missed_replies = 2\nreconnect_s = "
        + ("2.0" if response == "reconnect" else "0.0"),
        'on_link_loss = "stop"': f'on_link_loss = "{"sim" if response == "fallback" else "stop"}"',
    }
    for old, new in replace.items():
        if old not in text:
            raise RuntimeError(f"serial_halfcheetah_fb.toml no longer contains {old!r}; update bench faults")
        text = text.replace(old, new)
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "robot.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def _summarize(runs: list[dict[str, Any]], robot_s: float, time_scale: float) -> dict[str, Any]:
    faults = [f for r in runs for f in r["per_fault"]]
    stopped = [f for f in faults if f["stopped"]]
    times = [f["to_safe_stop_periods"] for f in stopped if f["to_safe_stop_periods"] is not None]
    by_kind = {k: sum(f["kind"] == k for f in faults) for k in ("reboot", "flap", "garbage", "delay")}
    lost = sum(r["lost_log_records"] for r in runs)
    after_reboot = sum(r["commands_after_reboot"] for r in runs)
    completed = [r for r in runs if r["status"] == "completed"]
    ended = sorted({r["status"] for r in runs} - {"completed"})
    summary = {
        "robot_hours": robot_s / 3600.0,
        "time_scale": time_scale,
        "runs": len(runs),
        "faults_injected": len(faults),
        "faults_by_kind": by_kind,
        "safe_stops": len(stopped),
        "absorbed": len(faults) - len(stopped),
        "safe_stops_unmeasured": len(stopped) - len(times),
        "to_safe_stop_max_periods": max(times, default=None),
        "to_safe_stop_p50_periods": float(np.median(times)) if times else None,
        "runs_completed": sum(not r["failed_over"] for r in completed),
        "runs_failed_over": sum(r["failed_over"] for r in completed),
        "runs_ended": {status: sum(r["status"] == status for r in runs) for status in ended},
        "reconnects": sum(r["reconnects"] for r in runs),
        "lost_log_records": lost,
        "log_records": sum(r["logger_counts"]["records"] for r in runs),
        "commands_after_reboot": after_reboot,
        "commands_in_flight_at_reboot": sum(r["commands_in_flight_at_reboot"] for r in runs),
        "unprovoked_watchdog_trips": sum(r["unprovoked_watchdog_trips"] for r in runs),
    }
    summary["exit_code"] = 0 if lost == 0 and after_reboot == 0 and not summary["safe_stops_unmeasured"] else 1
    return summary


def _print(s: dict[str, Any]) -> None:
    ended = ", ".join(f"{k} {v}" for k, v in s["runs_ended"].items()) or "0"
    kinds = ", ".join(f"{k} {v}" for k, v in s["faults_by_kind"].items())
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    rows = [
        ("robot time [h]", f"{s['robot_hours']:.2f} at {s['time_scale']:g}x real time"),
        ("runs", s["runs"]),
        ("faults injected", f"{s['faults_injected']} ({kinds})"),
        ("safe stops / absorbed", f"{s['safe_stops']} / {s['absorbed']}"),
        (
            "time to safe stop [periods]",
            f"max {fmt(s['to_safe_stop_max_periods'])}, p50 {fmt(s['to_safe_stop_p50_periods'])}",
        ),
        ("runs completed / failed over", f"{s['runs_completed']} / {s['runs_failed_over']}"),
        ("runs ended", ended),
        ("reconnects", s["reconnects"]),
        ("lost log records", f"{s['lost_log_records']} of {s['log_records']}"),
        (
            "commands to a rebooted robot",
            f"{s['commands_after_reboot']} after it announced the reboot, "
            f"{s['commands_in_flight_at_reboot']} already on the wire",
        ),
        ("watchdog trips with no fault", s["unprovoked_watchdog_trips"]),
        ("load average (1 min)", f"{s['load_avg_start']:.1f} at start, {s['load_avg_end']:.1f} at the end"),
    ]
    print(format_table("metactl bench faults: the runtime vs an emulated robot that fails", ("", ""), rows))
