"""Fixtures for the firmware tests: real builds (system gcc, arm-none-eabi-gcc), real ptys, real QEMU.

QEMU tests need Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm; without them they
are skipped with one loud reason (``make test`` prints it too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from metactl.controllers import NormalizerSnapshot, Policy, PolicySpec
from metactl.deploy import run_online
from metactl.deploy.controller_link import ControllerLink
from metactl.deploy.firmware_build import FIRMWARE_DIR, tools_missing
from metactl.deploy.hardware_config import load_hardware_config
from metactl.emulator.firmware_loop import firmware_in_the_loop
from metactl.emulator.launcher import emulator_process
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


def random_policy(hidden: tuple[int, ...], seed: int = 0, scale: float = 0.3) -> Policy:
    """A HalfCheetah-sized policy with random parameters and normalizer (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    spec = PolicySpec("mlp" if hidden else "linear", OBS, ACT, (-1.0,) * ACT, (1.0,) * ACT, hidden)
    normalizer = NormalizerSnapshot(rng.standard_normal(OBS), rng.uniform(0.2, 3.0, OBS))
    return Policy(spec, rng.standard_normal(spec.num_params) * scale, normalizer)


def gcc_shared(sources: list[str], out: str, includes: tuple[str, ...] = ()) -> str:
    """Build a shared library with the system gcc at the firmware's warning level; its path."""
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-fPIC", "-shared"]
    subprocess.run(["gcc", *flags, *(f"-I{i}" for i in includes), "-o", out, *sources, "-lm"], check=True)
    return out


@pytest.fixture(scope="session")
def codec_lib(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The firmware's codec (mc_wire.c, mc_msg.c) behind firmware/test/codec_shim.c, as a shared library."""
    src = os.path.join(FIRMWARE_DIR, "src")
    sources = [os.path.join(FIRMWARE_DIR, "test", "codec_shim.c")]
    sources += [os.path.join(src, f) for f in ("mc_wire.c", "mc_msg.c")]
    return gcc_shared(sources, str(tmp_path_factory.mktemp("codec") / "codec.so"), (src,))


HILL_CLIMB = {"name": "hill_climb", "queries": 2, "sigma": 0.2, "mode": "average"}
"""Schedule (1, 1, 1): per adaptation step 3 query episodes, then the post evaluation."""


@pytest.fixture(scope="session")
def hc_bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny really trained HalfCheetah forward-backward bundle (linear, hill climbing), ~1 s."""
    from metactl import train
    from metactl.deploy.export import export_bundle

    settings = {"iterations": 1, "directions": 1, "tasks_per_iteration": 1, "eval_every": 1, "eval_repeats": 1}
    config = train.config_for("halfcheetah_fb", **settings, horizon=20, adaptation=HILL_CLIMB)
    policy = train.train(config, str(tmp_path_factory.mktemp("hc_run")), progress=False).policy_path
    return export_bundle(policy, str(tmp_path_factory.mktemp("hc_bundle")))


def robot_config(path: str, *, controller: bool = False, steps: int = 20, **edits: str) -> str:
    """The shipped serial HalfCheetah config with ``steps``-step episodes, the policy on the controller if asked,
    and generous serial timeouts (QEMU moves a UART byte in ~0.1 ms); written to ``path``."""
    with open(SERIAL_CONFIG) as f:
        text = f.read().replace("# episode_steps = 200", f"episode_steps = {steps}")
    text = text.replace("reply_timeout_s = 0.02", "reply_timeout_s = 0.5")
    text = text.replace("handshake_timeout_s = 1.0", "handshake_timeout_s = 3.0")
    if controller:
        text = text.replace('link = "serial"', 'link = "serial"\npolicy_on = "controller"')
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.fixture(scope="session")
def posix_firmware(hc_bundle: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The reference firmware for ``hc_bundle`` on the POSIX port (system gcc)."""
    from metactl.deploy.firmware_build import build_firmware

    out = tmp_path_factory.mktemp("fw_posix")
    return build_firmware(hc_bundle, robot_config(str(out / "robot.toml")), str(out), "posix").path


@pytest.fixture(scope="session")
def m4_firmware(hc_bundle: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same firmware for the MPS2-AN386 (Cortex-M4F), an ELF for QEMU."""
    from metactl.deploy.firmware_build import build_firmware

    out = tmp_path_factory.mktemp("fw_m4")
    return build_firmware(hc_bundle, robot_config(str(out / "robot.toml")), str(out), "m4").path


@pytest.fixture(scope="session")
def python_runtime(hc_bundle: str, tmp_path_factory: pytest.TempPathFactory):
    """The reference: the Python runtime (policy on the host) against the Python emulator, seed 4."""
    work = tmp_path_factory.mktemp("python_runtime")
    config = robot_config(str(work / "robot.toml"))
    with emulator_process(config, str(work / "emu")) as emu:
        return run_online(hc_bundle, config, port=emu.port, seed=4, time_scale=0)


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
