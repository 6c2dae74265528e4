"""The robot-side runtime stays light: no torch, no training code, no MuJoCo, no onnx package."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("torch", "train", "mujoco", "onnx", "sim", "gymnasium", "matplotlib", "mcap", "emulator", "metactl")


def test_runtime_imports_only_robot_dependencies(tmp_path) -> None:
    code = (
        "import json, sys\n"
        "import deploy, deploy.runtime, deploy.bundle, deploy.robot, deploy.hardware_config, deploy.report\n"
        "import deploy.serial_robot, deploy.session, deploy.transport, deploy.protocol, deploy.run_logger\n"
        "import deploy.safety, deploy.pacing\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert json.loads(out.stdout) == []


def test_export_bundle_is_lazy(tmp_path) -> None:
    code = (
        "import sys, deploy\n"
        "assert 'onnx' not in sys.modules\n"
        "fn = deploy.export_bundle\n"
        "assert 'onnx' in sys.modules and fn.__module__ == 'deploy.export'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
