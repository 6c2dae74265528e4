"""Hardware configs: every shipped file loads and matches its family; bad files fail naming the field."""

from __future__ import annotations

import glob
import os

import pytest

from metactl import sim
from metactl.deploy import HardwareConfigError, load_hardware_config
from metactl.deploy.hardware_config import LINKS
from metactl.deploy.links import LINK_FACTORIES, open_link
from metactl.deploy.sim_robot import SimRobot

GOOD = """
[robot]
name = "test_bot"
link = "sim"

[control]
period_s = 0.1
episode_steps = 10

[signals]
observations = ["x", "y"]
actions = ["vx", "vy"]

[sim]
family = "four_corners"
task = 1
seed = 3
"""


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "robot.toml"
    path.write_text(text)
    return str(path)


def _error(tmp_path, text: str) -> str:
    with pytest.raises(HardwareConfigError) as e:
        load_hardware_config(_write(tmp_path, text))
    message = str(e.value)
    assert "\n" not in message and "robot.toml" in message, message
    return message


def test_every_shipped_config_matches_its_family(shipped_config) -> None:
    paths = sorted(glob.glob(os.path.join(os.path.dirname(shipped_config("x")), "*.toml")))
    assert {os.path.basename(p) for p in paths} >= {f"sim_{name}.toml" for name in sim.FAMILIES}
    for name in sim.FAMILIES:
        config = load_hardware_config(shipped_config(name))
        family = sim.make_family(name)
        assert config.robot.link == "sim" and config.sim is not None and config.sim.family == name
        assert config.signals.observations == family.observation_names
        assert config.signals.actions == family.action_names
        assert config.control.period_s == pytest.approx(family.control_period, rel=1e-9)
        open_link(config).close()  # the simulated robot agrees with the file


def test_every_link_type_a_config_accepts_has_a_driver() -> None:
    assert sorted(LINK_FACTORIES) == sorted(LINKS)


def test_good_config(tmp_path) -> None:
    config = load_hardware_config(_write(tmp_path, GOOD))
    assert config.control.period_s == 0.1 and config.control.episode_steps == 10
    assert config.robot_name == config.robot.name == "test_bot"
    assert config.signals.observations == ("x", "y")
    assert config.sim is not None and (config.sim.task, config.sim.seed) == (1, 3)


def test_optional_fields_default(tmp_path) -> None:
    config = load_hardware_config(_write(tmp_path, GOOD.replace("episode_steps = 10\n", "").replace("seed = 3\n", "")))
    assert config.control.episode_steps is None
    assert config.sim is not None and config.sim.seed == 0


def test_inline_task_table(tmp_path) -> None:
    text = GOOD.replace("task = 1", 'task = { type = "GoalTask", goal = [1.5, -2.0] }')
    config = load_hardware_config(_write(tmp_path, text))
    with open_link(config) as robot:
        assert robot.describe()["task"] == {"type": "GoalTask", "goal": [1.5, -2.0], "distractors": []}


def test_missing_file(tmp_path) -> None:
    with pytest.raises(HardwareConfigError, match="not found; pass the path"):
        load_hardware_config(str(tmp_path / "missing.toml"))


def test_malformed_toml_reports_the_line(tmp_path) -> None:
    message = _error(tmp_path, GOOD.replace("period_s = 0.1", "period_s = = 0.1"))
    assert "TOML syntax error" in message and "line 7" in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("period_s = 0.1\n", "", "control.period_s is missing"),
        ('observations = ["x", "y"]\n', "", "signals.observations is missing"),
        ("period_s = 0.1", "period_s = 'fast'", "control.period_s must be a positive number (got 'fast')"),
        ("period_s = 0.1", "period_s = -0.1", "control.period_s must be a positive number"),
        ("episode_steps = 10", "episode_steps = 2.5", "control.episode_steps must be a positive integer"),
        ('observations = ["x", "y"]', 'observations = "x"', "signals.observations must be a list of unique names"),
        ('observations = ["x", "y"]', 'observations = ["x", "x"]', "signals.observations must be a list of unique"),
        ('actions = ["vx", "vy"]', "actions = [1, 2]", "signals.actions must be a list of unique names"),
        ('link = "sim"', 'link = "can"', "robot.link must be one of ('sim', 'serial')"),
        ("task = 1", "task = -1", "sim.task must be an integer >= 0 or an inline table"),
        ("task = 1", "task = true", "sim.task must be"),
        ("seed = 3", "seed = 1.5", "sim.seed must be an integer >= 0"),
        ("period_s = 0.1", "period_s = 0.1\nperod_s = 0.1", "unknown key control.perod_s"),
        ("[sim]", "[simulation]", "unknown section [simulation]"),
        ('[robot]\nname = "test_bot"\nlink = "sim"\n', "", "section [robot] is missing"),
        ('[sim]\nfamily = "four_corners"\ntask = 1\nseed = 3\n', "", "section [sim] is missing"),
    ],
)
def test_bad_field_is_named(tmp_path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    assert expected in _error(tmp_path, GOOD.replace(old, new))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('family = "four_corners"', 'family = "four_cornerz"', "sim.family: unknown task family 'four_cornerz'"),
        ("task = 1", "task = 9", "sim.task: task index 9 is out of range"),
        (
            "task = 1",
            'task = { type = "VelocityTask", velocity = 1.0 }',
            "sim.task: family 'four_corners' takes GoalTask",
        ),
        ("task = 1", 'task = { type = "GoalTask" }', "sim.task: task {'type': 'GoalTask'} is invalid"),
        ("task = 1", 'task = { type = "GoalTask", goal = [1.0] }', "does not fit family 'four_corners'"),
        ('observations = ["x", "y"]', 'observations = ["y", "x"]', "signals.observations ['y', 'x'] differ"),
        ("period_s = 0.1", "period_s = 0.05", "control.period_s = 0.05 but the simulated robot steps every 0.1 s"),
    ],
)
def test_errors_found_when_the_robot_opens(tmp_path, old: str, new: str, expected: str) -> None:
    """The family and task are checked by ``sim`` at run time (lazily imported); errors still name the field."""
    config = load_hardware_config(_write(tmp_path, GOOD.replace(old, new)))
    with pytest.raises(HardwareConfigError) as e:
        open_link(config)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_sim_robot_clips_and_reports_what_was_sent() -> None:
    with SimRobot("four_corners", task=0, seed=0) as robot:
        robot.reset(0)
        state = robot.read_state()
        assert state.t == 0.0 and state.reward == 0.0 and not state.done
        sent = robot.write_command([3.0, -0.5])
        assert sent.tolist() == [1.0, -0.5]
        state = robot.read_state()
        assert state.obs.tolist() == pytest.approx([0.1, -0.05])  # dt 0.1 s x velocity (1, -0.5)
        assert state.t == pytest.approx(0.1)
        with pytest.raises(ValueError, match="non-finite"):
            robot.write_command([float("nan"), 0.0])
    with pytest.raises(RuntimeError, match="closed"):
        robot.reset(0)
