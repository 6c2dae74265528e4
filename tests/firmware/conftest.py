"""Fixtures for the firmware tests: real builds (system gcc, arm-none-eabi-gcc), real ptys, real QEMU.

QEMU tests need Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm; without them they
are skipped with one loud reason (``make test`` prints it too).
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from metactl.controllers import NormalizerSnapshot, Policy, PolicySpec
from metactl.deploy.firmware_build import FIRMWARE_DIR, tools_missing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERIAL_CONFIG = os.path.join(REPO, "hardware_configs", "serial_halfcheetah_fb.toml")
OBS, ACT = 17, 6
"""HalfCheetah: 17 observations, 6 actions in [-1, 1]."""

MISSING_ARM = tools_missing("m4")
needs_qemu = pytest.mark.skipif(
    bool(MISSING_ARM),
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
