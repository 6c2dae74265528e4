"""The robot-side runtime stays light: no torch, no training code, no MuJoCo, no onnx package."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = (
    "torch", "mujoco", "onnx", "gymnasium", "matplotlib", "mcap", "tqdm", "tyro",
    "metactl.train", "metactl.sim", "metactl.emulator", "metactl.bench", "metactl.cli",
)  # fmt: skip
ROBOT_MODULES = (
    "runtime", "bundles", "policy_bundle", "model_bundle", "links", "sim_robot", "hardware_config", "report",
    "serial_robot", "session", "transport", "protocol", "run_logger", "safety", "pacing",
    "protocol2", "controller_link", "controller_session", "fold", "c_export", "rl2_bundle",
)  # fmt: skip


def test_runtime_imports_only_robot_dependencies(tmp_path) -> None:
    code = (
        "import importlib, json, sys\n"
        f"for m in {ROBOT_MODULES!r}: importlib.import_module('metactl.deploy.' + m)\n"
        "import metactl.controllers.mpc, metactl.controllers.dynamics\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert json.loads(out.stdout) == []


def test_export_bundle_is_lazy(tmp_path) -> None:
    code = (
        "import sys\n"
        "from metactl import deploy\n"
        "assert 'onnx' not in sys.modules\n"
        "fn = deploy.export_bundle\n"
        "assert 'onnx' in sys.modules and fn.__module__ == 'metactl.deploy.export'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_a_model_bundle_adapts_and_plans_without_torch(mb_bundles, tmp_path) -> None:
    """GrBAL's adaptation step and ReBAL's state update run as ONNX graphs: the robot never needs torch."""
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from metactl.deploy.model_bundle import ModelBundle\n"
        "for path in sys.argv[1:]:\n"
        "    b = ModelBundle.load(path)\n"
        "    c = b.controller(seed=0)\n"
        "    c.reset()\n"
        "    obs = np.zeros(b.obs_dim)\n"
        "    for t in range(20):\n"
        "        a = c.act(obs, True)\n"
        "        c.applied(a)\n"
        "        obs = obs + 0.01 * np.resize(a, b.obs_dim)\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    args = [mb_bundles["grbal"], mb_bundles["rebal"], mb_bundles["mb"]]
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert json.loads(out.stdout) == []


def test_the_robot_install_requires_no_simulator_and_no_torch() -> None:
    """``pip install metactl`` (no extra) pulls only the robot's runtime: numpy, onnxruntime, pyserial (and tyro)."""
    import importlib.metadata

    required = [r for r in importlib.metadata.requires("metactl") or [] if "extra ==" not in r]
    names = {r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower() for r in required}
    assert names == {"numpy", "onnxruntime", "pyserial", "tyro"}


def test_an_rl2_bundle_steps_its_gru_without_torch(tmp_path) -> None:
    """RL²'s adaptation is its GRU state, stepped by onnxruntime: the robot never needs torch."""
    from metactl.deploy.rl2_export import export_rl2_bundle
    from metactl.train.rl2 import train_rl2
    from metactl.train.rl2_config import RL2Config

    tiny = RL2Config(family="halfcheetah_fb", episodes=2, episode_len=5, iterations=1, trials=2, minibatches=1,
                     hidden=8, eval_trials=2)  # fmt: skip
    bundle = export_rl2_bundle(train_rl2(tiny, str(tmp_path / "run")).model_path, str(tmp_path / "bundle"))
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from metactl.deploy.bundles import load_bundle\n"
        "c = load_bundle(sys.argv[1]).controller()\n"
        "for episode in range(2):\n"
        "    c.reset()\n"
        "    for t in range(5):\n"
        "        c.applied(c.act(np.zeros(c.bundle.obs_dim), True))\n"
        "        c.rewarded(0.5)\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, bundle], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert json.loads(out.stdout) == []
