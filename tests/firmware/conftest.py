"""Fixtures for the firmware tests: real builds (system gcc, arm-none-eabi-gcc), real ptys, real QEMU.

QEMU tests need Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm; without them they
are skipped with one loud reason (``make test`` prints it too). Shared helpers are in ``firmware_helpers``.
"""

from __future__ import annotations

import os

import pytest
from firmware_helpers import HILL_CLIMB, gcc_shared, robot_config

from metactl.deploy import run_online
from metactl.deploy.firmware_build import FIRMWARE_DIR
from metactl.emulator.launcher import emulator_process


@pytest.fixture(scope="session")
def codec_lib(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The firmware's codec (mc_wire.c, mc_msg.c) behind firmware/test/codec_shim.c, as a shared library."""
    src = os.path.join(FIRMWARE_DIR, "src")
    sources = [os.path.join(FIRMWARE_DIR, "test", "codec_shim.c")]
    sources += [os.path.join(src, f) for f in ("mc_wire.c", "mc_msg.c")]
    return gcc_shared(sources, str(tmp_path_factory.mktemp("codec") / "codec.so"), (src,))


@pytest.fixture(scope="session")
def hc_bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny really trained HalfCheetah forward-backward bundle (linear, hill climbing), ~1 s."""
    from metactl import train
    from metactl.deploy.export import export_bundle

    settings = {"iterations": 1, "directions": 1, "tasks_per_iteration": 1, "eval_every": 1, "eval_repeats": 1}
    config = train.config_for("halfcheetah_fb", **settings, horizon=20, adaptation=HILL_CLIMB, policy="linear")
    policy = train.train(config, str(tmp_path_factory.mktemp("hc_run")), progress=False).policy_path
    return export_bundle(policy, str(tmp_path_factory.mktemp("hc_bundle")))


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
