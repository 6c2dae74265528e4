"""Helpers of the firmware tests (imported by name: two conftest modules cannot both be ``conftest``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from metactl.controllers import NormalizerSnapshot, Policy, PolicySpec
from metactl.deploy.controller_link import ControllerLink
from metactl.deploy.firmware_build import tools_missing
from metactl.deploy.hardware_config import load_hardware_config
from metactl.emulator.firmware_loop import firmware_in_the_loop
from metactl.emulator.plant import read_plant_log

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERIAL_CONFIG = os.path.join(REPO, "hardware_configs", "serial_halfcheetah_fb.toml")
OBS, ACT = 17, 6
"""HalfCheetah: 17 observations, 6 actions in [-1, 1]."""

MISSING_ARM = tools_missing("m4")
REQUIRE_QEMU = os.environ.get("METACTL_REQUIRE_QEMU") == "1"
"""Set by .ci/run: missing tools then fail the QEMU tests instead of skipping them."""
needs_qemu = pytest.mark.skipif(
    bool(MISSING_ARM) and not REQUIRE_QEMU,
    reason=f"QEMU FIRMWARE TESTS SKIPPED: {', '.join(MISSING_ARM)} missing "
    "(apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)",
)


def random_policy(hidden: tuple[int, ...], seed: int = 0, scale: float = 0.3, context: int = 0) -> Policy:
    """A HalfCheetah-sized policy with random parameters and normalizer (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    spec = PolicySpec("mlp" if hidden else "linear", OBS, ACT, (-1.0,) * ACT, (1.0,) * ACT, hidden, context)
    normalizer = NormalizerSnapshot(rng.standard_normal(OBS), rng.uniform(0.2, 3.0, OBS))
    return Policy(spec, rng.standard_normal(spec.num_params) * scale, normalizer)


def gcc_shared(sources: list[str], out: str, includes: tuple[str, ...] = ()) -> str:
    """Build a shared library with the system gcc at the firmware's warning level; its path."""
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-fPIC", "-shared"]
    subprocess.run(["gcc", *flags, *(f"-I{i}" for i in includes), "-o", out, *sources, "-lm"], check=True)
    return out


HILL_CLIMB = {"name": "hill_climb", "queries": 2, "sigma": 0.2, "mode": "average", "params": "all"}
"""Schedule (1, 1, 1): per adaptation step 3 query episodes, then the post evaluation."""


def robot_config(path: str, *, controller: bool = False, steps: int = 20, **edits: str) -> str:
    """The shipped serial HalfCheetah config with ``steps``-step episodes, the policy on the controller if asked,
    and generous serial timeouts (QEMU moves a UART byte in ~0.1 ms, notices a pty's reader within ~1 s, and shares
    2 cores with everything else); written to ``path``."""
    with open(SERIAL_CONFIG) as f:
        text = f.read().replace("# episode_steps = 200", f"episode_steps = {steps}")
    text = text.replace("reply_timeout_s = 0.02", "reply_timeout_s = 2.0")
    text = text.replace("handshake_timeout_s = 1.0", "handshake_timeout_s = 10.0")
    if controller:
        text = text.replace('link = "serial"', 'link = "serial"\npolicy_on = "controller"')
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)
    return path


def returns(report) -> np.ndarray:
    return np.array([e.episode_return for e in report.episodes])


HOST = """
import sys
from metactl.deploy import protocol2 as p2
from metactl.deploy.controller_link import ControllerLink
from metactl.deploy.hardware_config import load_hardware_config
link = ControllerLink(load_hardware_config(sys.argv[1]), sys.argv[2])
def step(s):
    if s.step == 3:
        print("running", flush=True)
link.episode(7, 100000, p2.START_STREAM, step)
"""


def kill_host_mid_episode(firmware: str, config_path: str, work: str, icount_shift: int | None = None):
    """Run a host process that starts a long on-controller episode, SIGKILL it after a few control periods;
    return (the controller's STATUS_REPORT, the plant's motor commands, the watchdog time [us])."""
    config = load_hardware_config(config_path)
    with firmware_in_the_loop(firmware, config_path, work, icount_shift=icount_shift) as loop:
        cmd = [sys.executable, "-c", HOST, config_path, loop.host_port]
        host = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = host.stdout.readline().strip()
        finally:
            os.kill(host.pid, signal.SIGKILL)
            host.wait()
        assert line == b"running", host.stderr.read().decode()[-2000:]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            commands = [r for r in read_plant_log(loop.plant_log) if "cmd" in r]
            if commands and commands[-1]["cmd"] == [0.0] * 6:
                break
            time.sleep(0.05)
        link = ControllerLink(config, loop.host_port)  # the supervisor comes back and asks
        report = link.status()
        link.transport.close()
    return report, commands, round(config.safety.watchdog_s * 1e6)
