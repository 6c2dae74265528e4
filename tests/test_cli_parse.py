"""The command line is generated from the config dataclasses: every field is a flag, presets and saved configs
merge with flags field by field, and bad arguments are one line (parsed in-process: no training runs here)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from metactl import cli, train
from metactl.commands import UserError
from metactl.train import TrainConfig
from metactl.train.mb_config import MBConfig


def settings(*argv: str):
    _, args = cli.parse(list(argv))
    return args.settings


def test_adaptation_flags_merge_into_the_family_preset() -> None:
    """Issue 15's two bugs: --adapt-queries was ignored unless --adaptation was given, and naming the operator
    replaced the preset (four_corners became 20 queries, sigma 0.1, batch mode)."""
    preset = train.config_for("four_corners")
    cfg = settings("train", "es", "--out", "x", "--family", "four_corners", "--adaptation.queries", "3")
    assert cfg.adaptation == dataclasses.replace(preset.adaptation, queries=3)
    cfg = settings("train", "es", "--out", "x", "--adaptation.name", "hill_climb")
    assert cfg.adaptation == preset.adaptation  # (10 queries, sigma 1.0, average mode): the preset kept
    cfg = settings("train", "es", "--out", "x", "--family", "halfcheetah_fb", "--adaptation.evaluations", "2")
    assert cfg.adaptation == dataclasses.replace(train.config_for("halfcheetah_fb").adaptation, evaluations=2)
    assert cfg.horizon == train.PRESETS["halfcheetah_fb"]["horizon"]


def test_every_config_field_is_a_flag() -> None:
    """Each TrainConfig and MBConfig field (but the method a subcommand fixes) can be set from the command line."""
    cfg = settings("train", "es", "--out", "x", "--optimizer", "sgd", "--no-normalize-obs", "--eval-repeats", "3",
                   "--top-directions", "4", "--return-normalization", "ars")  # fmt: skip
    assert (cfg.optimizer, cfg.normalize_obs, cfg.eval_repeats, cfg.top_directions) == ("sgd", False, 3, 4)
    assert cfg.return_normalization == "ars"
    mb = settings("train", "rebal", "--out", "x", "--temperature", "0.3", "--noise-std", "0.4", "--window", "4")
    assert (mb.method, mb.temperature, mb.noise_std, mb.window) == ("rebal", 0.3, 0.4, 4)
    assert isinstance(mb, MBConfig) and isinstance(cfg, TrainConfig)  # the library's classes, not the CLI's
    with pytest.raises(UserError, match="Unrecognized options: --method"):
        cli.parse(["train", "grbal", "--out", "x", "--method", "rebal"])


def test_context_adaptation_resolves_the_first_layers_biases() -> None:
    """--adaptation.params first_bias: the operator perturbs the first layer's biases of this run's policy only,
    and records where they are (the robot rebuilds the same operator from the bundle)."""
    cfg = settings("train", "es", "--out", "x", "--family", "halfcheetah_fb", "--policy", "mlp", "--hidden", "8",
                   "--adaptation.params", "first_bias", "--adaptation.sigma", "1.0")  # fmt: skip
    op = cfg.operator()
    assert op.span == (17 * 8, 17 * 8 + 8) == cfg.policy_spec().bias_span(0)
    assert (op.sigma, op.queries) == (1.0, train.PRESETS["halfcheetah_fb"]["adaptation"]["queries"])
    assert train.config_for("halfcheetah_vel").operator().span is None  # its preset perturbs every parameter
    preset = train.config_for("halfcheetah_fb")  # chosen on validation tasks: an MLP of 16, context adaptation
    assert (preset.policy, preset.hidden, preset.operator().span) == ("mlp", (16,), (17 * 16, 17 * 16 + 16))
    with pytest.raises(train.ConfigError, match=r"adaptation\.params: must be 'all', 'first_bias' or 'context'"):
        train.config_for("halfcheetah_fb", adaptation={"params": "last_bias"})


def test_context_inputs_are_a_flag_and_their_values_the_span() -> None:
    """--context K gives the policy K context inputs; --adaptation.params context adapts their values alone, the
    last K entries of the vector; asking for it without context names the fix."""
    cfg = settings("train", "es", "--out", "x", "--family", "halfcheetah_fb", "--context", "2",
                   "--adaptation.params", "context")  # fmt: skip
    spec = cfg.policy_spec()
    assert (spec.context, spec.hidden) == (2, (16,))  # the rest of the preset kept, field by field
    assert cfg.operator().span == spec.context_span() == (spec.num_params - 2, spec.num_params)
    assert spec.num_params == (17 + 2) * 16 + 16 + 16 * 6 + 6 + 2
    with pytest.raises(train.ConfigError, match="--context 2"):
        train.config_for("halfcheetah_fb", adaptation={"params": "context"})
    with pytest.raises(train.ConfigError, match="context: must be an integer >= 0"):
        train.config_for("halfcheetah_fb", context=-1)


def test_a_specialist_is_one_flag_on_top_of_the_baseline() -> None:
    cfg = settings("train", "es", "--out", "x", "--family", "halfcheetah_vel", "--no-meta", "--specialist-task", "3")
    assert (cfg.meta, cfg.specialist_task) == (False, 3)
    assert cfg == train.config_for("halfcheetah_vel", meta=False, specialist_task=3)  # the preset's budget
    with pytest.raises(train.ConfigError, match="add --no-meta"):
        settings("train", "es", "--out", "x", "--specialist-task", "0")


def test_help_text_comes_from_the_field_docstrings(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli.parse(["train", "grbal", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--inner-lr" in out and "step size of the adaptation step" in out


def test_config_file_starts_from_a_saved_run(tmp_path) -> None:
    saved = train.config_for("halfcheetah_fb", iterations=7, adaptation={"queries": 4}, seed=3)
    (tmp_path / "config.json").write_text(saved.dumps())
    cfg = settings("train", "es", "--out", "x", "--config", str(tmp_path))
    assert cfg == saved  # a re-run from the saved config: every field the same
    cfg = settings("train", "es", "--out", "x", "--config", str(tmp_path / "config.json"), "--seed", "4")
    assert cfg == dataclasses.replace(saved, seed=4)
    toml = tmp_path / "mb.toml"
    toml.write_text('family = "ant_crippled_leg"\niterations = 3\nhidden = [32, 32]\n')
    mb = settings("train", "mb", "--out", "x", "--config", str(toml), "--samples", "20")
    assert (mb.family, mb.iterations, mb.hidden, mb.samples, mb.method) == ("ant_crippled_leg", 3, (32, 32), 20, "mb")
    (tmp_path / "g.json").write_text(json.dumps({"method": "grbal"}))
    with pytest.raises(train.ConfigError, match="is a grbal config; run 'metactl train grbal"):
        cli.parse(["train", "rebal", "--out", "x", "--config", str(tmp_path / "g.json")])


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "es", "--out", "x", "--iterations", "many"], "Error parsing --iterations"),
        (["train", "es"], "Missing from metactl train es: --out"),
        (["train", "sarsa"], "unknown command 'sarsa'"),
        (["bench", "everything"], "choose one of: rollout"),
        (["run", "--bundle", "b", "--config", "c", "--out", "o", "--mode", "ppo"], "--mode"),
    ],
)
def test_bad_arguments_are_one_line(argv: list[str], needle: str) -> None:
    with pytest.raises(UserError) as e:
        cli.parse(argv)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_missing_extra_is_named_in_one_line(tmp_path) -> None:
    """A workstation without torch (blocked in a fresh interpreter) asked to train GrBAL: one line naming the extra."""
    code = "import sys; sys.modules['torch'] = None; from metactl.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["train", "grbal", "--out", str(tmp_path / "run"), "--iterations", "1"]
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == cli.EXIT_USAGE
    assert proc.stderr.strip() == (
        "metactl: this command needs the 'model-based' extra (torch is not installed): "
        "pip install 'metactl[model-based]'"
    )


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--bundle", "b", "--config", "c", "--out", "o", "--adapt-steps", "0"], "--adapt-steps must be >= 1"),
        (["run", "--bundle", "b", "--config", "c", "--out", "o", "--adapt-steps", "-1"], "--adapt-steps must be >= 1"),
        (["run", "--bundle", "b", "--config", "c", "--out", "o", "--seed", "-1"], "--seed must be an integer >= 0"),
        (["run", "--bundle", "b", "--config", "c", "--out", "o", "--time-scale", "-1"], "--time-scale must be"),
        (["run", "--bundle", "b", "--config", "c", "--out", "o", "--time-scale", "nan"], "--time-scale must be"),
        (["train", "es", "--out", "o", "--seed", "-1"], "seed: must be an integer >= 0"),
        (["train", "mb", "--out", "o", "--seed", "-2"], "seed: must be an integer >= 0"),
    ],
)
def test_bad_values_are_one_line(argv: list[str], needle: str, capsys) -> None:
    """Each of these ended in a traceback (issue 18): now one line on stderr and exit 2, before anything runs."""
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_out_naming_a_file_is_one_line(tmp_path, capsys) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    for argv in (["run", "--bundle", "b", "--config", "c"], ["eval", "r"], ["train", "es"], ["export", "--run", "r"]):
        assert cli.main([*argv, "--out", str(target)]) == cli.EXIT_USAGE
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is a file" in err[0], err
    assert target.read_text() == "keep me"
