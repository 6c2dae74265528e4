"""``metactl bench firmware-loop``: the same adaptation run three ways, returns compared episode by episode.

1. the Python runtime: the policy on the host (onnxruntime), the Python emulator as the robot (protocol v1);
2. the reference firmware on an emulated Cortex-M4F (QEMU mps2-an386, ``-icount shift=0``) running the policy
   itself, unpaced, the MuJoCo plant on its motor bus, the host supervising over protocol v2 and uploading every
   parameter vector the hill-climbing (or ES-gradient) operator proposes as PARAMS;
3. optionally the same firmware paced at its real control period (``paced``; no -icount, so its clock is the
   workstation's), to show it keeps the rate.

Same bundle, task and seeds everywhere. Reported: every episode's return in each run, the largest relative
difference, the largest difference between a command the controller wrote and onnxruntime's for the same
observation (every step of every episode), whether the adapted parameters are identical, and wall times.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from metactl.hardware_configs import config_path
from metactl.report import format_table
from metactl.summary import write_summary


def _config(src: str, dst: str, controller: bool) -> str:
    with open(src) as f:
        text = f.read().replace("reply_timeout_s = 0.02", "reply_timeout_s = 2.0")  # QEMU's UART, a shared machine
    text = text.replace("handshake_timeout_s = 1.0", "handshake_timeout_s = 10.0")
    if controller:
        text = text.replace('link = "serial"', 'link = "serial"\npolicy_on = "controller"', 1)
    with open(dst, "w") as f:
        f.write(text)
    return dst


def bench_firmware_loop(
    bundle: str,
    out_dir: str,
    *,
    config: str = config_path("serial_halfcheetah_fb"),
    seed: int = 0,
    adaptation_steps: int = 1,
    paced: bool = False,
) -> dict[str, Any]:
    """Run the three arrangements on ``bundle`` (an ES policy bundle for the robot of ``config``)."""
    from metactl.deploy import run_online
    from metactl.deploy.firmware_build import build_firmware
    from metactl.emulator.firmware_loop import firmware_in_the_loop
    from metactl.emulator.launcher import emulator_process

    os.makedirs(out_dir, exist_ok=True)
    host_cfg = _config(config, os.path.join(out_dir, "host.toml"), controller=False)
    ctrl_cfg = _config(config, os.path.join(out_dir, "controller.toml"), controller=True)
    elf = build_firmware(bundle, ctrl_cfg, os.path.join(out_dir, "firmware"), "m4").path
    runs: dict[str, Any] = {}
    t0 = time.perf_counter()
    with emulator_process(host_cfg, os.path.join(out_dir, "emulator")) as emu:
        runs["python"] = run_online(bundle, host_cfg, port=emu.port, seed=seed, adaptation_steps=adaptation_steps,
                                    time_scale=0, out_dir=os.path.join(out_dir, "python"))  # fmt: skip
    seconds = {"python": time.perf_counter() - t0}
    for name, scale in (("qemu", 0.0), *((("qemu_paced", 1.0),) if paced else ())):
        t0 = time.perf_counter()
        shift = 0 if scale == 0 else None  # unpaced: the guest clock counts instructions; paced: real time
        with firmware_in_the_loop(elf, ctrl_cfg, os.path.join(out_dir, f"{name}_loop"), icount_shift=shift) as loop:
            runs[name] = run_online(bundle, ctrl_cfg, port=loop.host_port, seed=seed, time_scale=scale,
                                    adaptation_steps=adaptation_steps, out_dir=os.path.join(out_dir, name))  # fmt: skip
        seconds[name] = time.perf_counter() - t0
    ref = np.array([e.episode_return for e in runs["python"].episodes])
    summary: dict[str, Any] = {"bundle": bundle, "seed": seed, "episodes": len(ref), "seconds": seconds}
    rows = []
    for name, report in runs.items():
        got = np.array([e.episode_return for e in report.episodes])
        entry = {"status": report.status, "pre": report.pre_adaptation_return,
                 "post": list(report.post_adaptation_returns), "returns": got.tolist()}  # fmt: skip
        if name != "python":
            entry["max_rel_diff_vs_python"] = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-12)))
            entry["adapted_params_identical"] = bool(
                np.array_equal(report.adapted_params, runs["python"].adapted_params)
            )
            entry.update({k: report.health["timing"][k] for k in ("steps", "parity_max_abs_diff", "parity_mismatches")})
            entry["controller"] = report.health.get("controller", {})
        summary[name] = entry
        rows.append((name, report.status, f"{entry['pre']:.3f}", ", ".join(f"{p:.3f}" for p in entry["post"]),
                     f"{entry.get('max_rel_diff_vs_python', 0.0):.1e}", f"{entry.get('parity_max_abs_diff', 0.0):.1e}",
                     f"{seconds[name]:.1f}"))  # fmt: skip
    write_summary(out_dir, summary)
    headers = ("run", "status", "return before", "after", "max rel diff vs python", "max |action - ORT|", "wall s")
    print(format_table(f"metactl bench firmware-loop: {len(ref)} episodes, seed {seed}", headers, rows))
    return summary
