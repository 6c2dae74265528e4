"""Gymnasium conventions: metactl's ids are known to ``gymnasium.make`` in a program that never imports metactl
(an installed wheel's .pth registers them when Gymnasium loads), with the family's horizon as the time limit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import gymnasium
import pytest

from metactl import gymnasium_envs, sim

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_id_table_matches_the_families() -> None:
    """``metactl.gymnasium_envs`` must not import MuJoCo, so it holds its own table: it must agree with the families."""
    table = {env_id: (name, steps) for env_id, (name, steps) in gymnasium_envs.ENVS.items()}
    assert table == {cls.env_id: (name, sim.make_family(name).horizon) for name, cls in sim.FAMILIES.items()}


@pytest.mark.parametrize("name", ["four_corners", "halfcheetah_disabled_joint"])
def test_make_sets_the_time_limit_to_the_horizon(name: str) -> None:
    env = gymnasium.make(sim.FAMILIES[name].env_id)
    assert env.spec.max_episode_steps == sim.make_family(name).horizon
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        *_, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == sim.make_family(name).horizon


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real (non-editable) install of this checkout into a folder: the wheel's files, its .pth included."""
    target, source = str(tmp_path_factory.mktemp("site")), str(tmp_path_factory.mktemp("src") / "metactl")
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info"))
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", target]
    cmd.append(source)
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    return target


def test_an_installed_metactl_registers_its_envs_without_being_imported(installed: str) -> None:
    code = (
        "import json, site, sys\n"
        f"site.addsitedir({installed!r})\n"  # a site-packages folder: its .pth files run, as at interpreter start
        "assert not any(m.startswith('metactl.sim') or m == 'mujoco' for m in sys.modules)\n"
        "import gymnasium\n"
        "env = gymnasium.make('metactl/HalfCheetahDisabledJoint-v0')\n"
        "obs, _ = env.reset(seed=0)\n"
        "print(json.dumps([env.spec.max_episode_steps, len(obs), 'metactl.sim' in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == [1000, 17, True]  # the env module loaded only on make
