"""The Ray backend gives the same run as local processes; Ray is started inside a loopback-only
network namespace so none of its traffic leaves this machine (it binds every interface otherwise)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from metactl import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETTINGS = {
    "iterations": 2,
    "directions": 3,
    "tasks_per_iteration": 2,
    "eval_every": 1,
    "eval_repeats": 1,
    "horizon": 20,
    "adaptation": {"name": "hill_climb", "queries": 2, "sigma": 0.1, "mode": "average"},
}


def _isolation_unavailable() -> str | None:
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install 'metactl[ray]')"
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs root with unshare and ip to give Ray a loopback-only network namespace"
    probe = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"network namespaces are unavailable here: {probe.stderr.strip()}"
    return None


def run_in_loopback_namespace(code: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in a fresh network namespace whose only interface is loopback."""
    script = f"ip link set lo up && exec {sys.executable} -c {_quote(code)}"
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _quote(code: str) -> str:
    return "'" + code.replace("'", "'\\''") + "'"


@pytest.mark.skipif(_isolation_unavailable() is not None, reason=str(_isolation_unavailable()))
def test_ray_backend_gives_the_same_run_as_one_local_worker(tmp_path) -> None:
    cfg = train.config_for("halfcheetah_fb", **SETTINGS)
    local = train.train(cfg, str(tmp_path / "local"), progress=False, workers=1)
    code = textwrap.dedent(
        f"""
        from metactl import train
        cfg = train.config_for("halfcheetah_fb", **{SETTINGS!r})
        train.train(cfg, {str(tmp_path / "ray")!r}, progress=False, workers=2, backend="ray")
        import ray
        assert not ray.is_initialized(), "the backend must shut Ray down"
        """
    )
    proc = run_in_loopback_namespace(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(local.policy_path) as a, np.load(tmp_path / "ray" / "policy.npz") as b:
        for key in ("params", "norm_mean", "norm_std"):
            np.testing.assert_array_equal(a[key], b[key])
