"""``metactl bench loop``: the full robot runtime against the emulator over a pty, at 500 Hz and 1 kHz.

For each rate, an emulator process steps the MuJoCo HalfCheetah behind protocol v1 on a
pseudo-terminal, and the host runs one long episode through ``RobotSession`` — the
deadline-paced loop, onnxruntime inference (IOBinding), the safety layer, the serial
codec and the MCAP log in its background thread — exactly as ``metactl run`` does. The
emulator advances one simulated control step per command, so simulated time runs
faster than wall time here: what is measured is the loop, not the gait.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from typing import Any

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
    from metactl.deploy.session import PolicyController, RobotSession

    os.makedirs(out_dir, exist_ok=True)
    shutil.rmtree(os.path.join(out_dir, "bundle"), ignore_errors=True)  # scratch: rebuilt every run
    base_bundle = _tiny_bundle(os.path.join(out_dir, "bundle"))
    runs: dict[str, dict[str, Any]] = {}
    for rate in rates:
        run_dir = os.path.join(out_dir, f"{rate}hz")
        config_path = _config_at(rate, seconds, run_dir)
        bundle_dir = _bundle_at(base_bundle, 1.0 / rate, os.path.join(run_dir, "bundle"))
        config, bundle = load_hardware_config(config_path), PolicyBundle.load(bundle_dir)
        check_compatibility(bundle.meta, config)
        steps = round(rate * seconds)
        with emulator_process(config_path, run_dir) as emu:
            logger = RunLogger(os.path.join(run_dir, "run.mcap"))
            try:
                with (
                    realtime_process(),
                    RobotSession(config, port=emu.port, log_fn=logger.log, idle_fn=logger.set_budget) as session,
                ):
                    if session.link.describe()["link"] != "serial":
                        raise RuntimeError(f"the emulator on {emu.port} did not answer; see {run_dir}/emulator.log")
                    t0 = time.perf_counter()
                    _, length = session.episode(PolicyController(bundle.act, bundle.params), seed=0, steps=steps)
                    elapsed = time.perf_counter() - t0
                    timing, counters = session.timer.summary(), session.link.counters()
            finally:
                logger.close()
        runs[str(rate)] = {
            "target_hz": rate,
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
        }
    top = runs.get("1000") or runs[str(rates[-1])]
    summary = {
        "rate_hz": top["rate_hz"],
        "deadline_met_fraction": top["deadline_met_fraction"],
        "jitter_p99_ms": top["jitter_p99_ms"],
        "lost_frames": top["lost_frames"],
        "runs": runs,
    }
    write_summary(out_dir, summary)
    keys = ("rate_hz", "deadline_met_fraction", "jitter_p50_ms", "jitter_p99_ms", "inference_p50_us",
            "inference_p99_us", "read_p50_us", "read_p99_us", "write_p50_us", "write_p99_us", "lost_frames",
            "bad_frames")  # fmt: skip
    rows = [(k, *(_cell(r[k]) for r in runs.values())) for k in keys]
    print(format_table("metactl bench loop: host <-> emulator over a pty", ("", *(f"{r} Hz" for r in runs)), rows))
    return summary


def _cell(v: Any) -> Any:
    return f"{v:.4f}" if isinstance(v, float) and v < 1 else v


def _tiny_bundle(out: str) -> str:
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
    }
    for old, new in replace.items():
        if old not in text:
            raise RuntimeError(f"{BASE_CONFIG} no longer contains {old!r}; update bench_loop")
        text = text.replace(old, new)
    path = os.path.join(run_dir, "robot.toml")
    with open(path, "w") as f:
        f.write(text)
    return path
