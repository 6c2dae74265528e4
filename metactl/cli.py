"""``metactl``: one command line whose flags are generated from the config and argument dataclasses.

``metactl <command> [<what>] --flags``: each leaf command is a frozen dataclass parsed by tyro (as CleanRL's
scripts are), so every config field is a flag whose help is the field's docstring, and then one plain function
of ``metactl.commands`` runs it. ``metactl train es|grbal|rebal|mb`` start from the family's preset, or from a
saved ``--config`` (a run folder's config.json, or a TOML/JSON file), and flags override it field by field.

Exit codes: 0 the work completed as asked (a configured fail-over to simulation or reconnect included, as
summary.json records); 1 internal error, or a benchmark whose own check failed (it says which); 2 bad input
(arguments, configs, bundles, files; one line says what and how to fix it), or a missing optional extra (one line
names it); 3 robot link lost, or the robot rebooted, for good; 4 safety stop (state limits, the robot's own
safe-stop, or too many non-finite commands). Robot-side commands import no training code.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import logging
import os
import re
import sys
import typing
from collections.abc import Callable
from typing import Annotated, Any

import tyro

from metactl import commands
from metactl.arguments import (
    BenchES,
    BenchFaults,
    BenchFirmware,
    BenchFirmwareLoop,
    BenchFuzz,
    BenchInference,
    BenchLoop,
    BenchMeta,
    BenchMPC,
    BenchRL2,
    BenchRollout,
    Demo,
    Emulate,
    Eval,
    Export,
    Families,
    LogCheck,
    LogRecover,
    Run,
    Sim2Real,
    TrainES,
    TrainModelBased,
    TrainRL2,
)
from metactl.commands import UserError

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_LINK_LOST, EXIT_SAFETY_STOP = 0, 1, 2, 3, 4
EXTRAS = {
    "mujoco": "sim", "gymnasium": "sim", "torch": "model-based", "onnx": "train", "onnxscript": "train",
    "tqdm": "train", "matplotlib": "train", "tensorboardX": "train", "ray": "ray", "imageio": "video",
    "imageio_ffmpeg": "video", "foxglove": "live", "mcap": "dev",
}  # fmt: skip
"""Optional module -> the extra that installs it (``pip install 'metactl[EXTRA]'``)."""
Leaf = tuple[type, Callable[[Any], dict[str, Any]]]
COMMANDS: dict[str, Leaf | dict[str, Leaf]] = {
    "train": {
        "es": (TrainES, commands.train_es),
        **{m: (TrainModelBased, commands.train_model_based) for m in ("grbal", "rebal", "mb")},
        "rl2": (TrainRL2, commands.train_rl2),
    },
    "export": (Export, commands.export),
    "run": (Run, commands.run),
    "eval": (Eval, commands.evaluate),
    "demo": (Demo, commands.demo),
    "emulate": (Emulate, commands.emulate),
    "sim2real": (Sim2Real, commands.sim2real),
    "families": (Families, commands.families),
    "log": {"check": (LogCheck, commands.log_check), "recover": (LogRecover, commands.log_recover)},
    "bench": {
        "rollout": (BenchRollout, commands.bench),
        "es": (BenchES, commands.bench),
        "loop": (BenchLoop, commands.bench),
        "fuzz": (BenchFuzz, commands.bench),
        "faults": (BenchFaults, commands.bench),
        "mpc": (BenchMPC, commands.bench),
        "meta": (BenchMeta, commands.bench),
        "rl2": (BenchRL2, commands.bench),
        "firmware": (BenchFirmware, commands.bench),
        "inference": (BenchInference, commands.bench),
        "firmware-loop": (BenchFirmwareLoop, commands.bench),
    },
}
"""``metactl <command> [<what>]`` -> (argument dataclass, the function that runs it)."""


def _leaf(argv: list[str]) -> tuple[list[str], Leaf, list[str]]:
    """(command path, its leaf, the remaining arguments); ``UserError`` for an unknown command."""
    node: Any = COMMANDS
    path: list[str] = []
    while isinstance(node, dict):
        if not argv or argv[0] in ("-h", "--help") or argv[0] not in node:
            _usage(path, node, argv[:1])
        path.append(argv[0])
        node, argv = node[argv[0]], argv[1:]
    return path, node, argv


def _usage(path: list[str], node: dict[str, Any], got: list[str]) -> None:
    prog = " ".join(["metactl", *path])
    if got and got[0] not in ("-h", "--help"):
        raise UserError(f"{prog}: unknown command {got[0]!r}; choose one of: {', '.join(node)}")
    lines = [f"usage: {prog} {{{','.join(node)}}} ...", "", (__doc__ or "").split("\n\n")[0] if not path else ""]
    for name, sub in node.items():
        doc = (sub[0].__doc__ or "") if isinstance(sub, tuple) else f"{', '.join(sub)} (see '{prog} {name} --help')"
        lines.append(f"  {name:<10} {doc.strip().splitlines()[0] if doc.strip() else ''}")
    if not path:
        lines += ["", (__doc__ or "").split("\n\n")[-1]]
    print("\n".join(lines))
    raise SystemExit(EXIT_OK if not got else EXIT_USAGE)


def _default(path: list[str], cls: type, argv: list[str]) -> Any:
    """The default instance a leaf is parsed against: training commands start from a preset or a saved config."""
    if cls not in (TrainES, TrainModelBased, TrainRL2):
        return None
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--family")
    known, _ = pre.parse_known_args(argv)
    if cls is TrainRL2:  # the family's RL² preset
        from metactl.train.rl2_config import preset

        return cls(out=tyro.MISSING, settings=preset(known.family or "bandit"))
    from metactl.train.config_files import initial_config

    return cls(out=tyro.MISSING, settings=initial_config(path[-1], known.config, known.family))


FIXED = {"method"}
"""Settings a subcommand fixes (``metactl train grbal`` is method grbal): no flag for them."""


def parse(argv: list[str]) -> tuple[Callable[[Any], dict[str, Any]], Any]:
    """The function and parsed arguments of ``metactl argv``; ``UserError`` (one line) for bad arguments."""
    path, (cls, fn), rest = _leaf(argv)
    default = _default(path, cls, rest)
    settings_type = None
    if default is not None:  # flags for every field of the settings' own type
        settings_type = type(default.settings)
        flags = _flag_type(settings_type)
        cls = _with_settings(cls, flags)
        default = cls(**{**vars(default), "settings": flags(**vars(default.settings))})
    prog = " ".join(["metactl", *path])
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            args = tyro.cli(cls, args=rest, prog=prog, default=default)
    except SystemExit as e:
        if e.code in (0, None):
            raise
        raise UserError(_one_line(captured.getvalue(), prog)) from None
    if settings_type is not None:  # back to the library's own config class
        args = dataclasses.replace(args, settings=settings_type(**vars(args.settings)))
    _check_common(args)
    return fn, args


def _check_common(args: Any) -> None:
    """Arguments many commands share: a seed is >= 0, and --out is a folder (new or existing), never a file."""
    seed = getattr(args, "seed", None)
    if isinstance(seed, int) and seed < 0:
        raise UserError(f"--seed must be an integer >= 0, got {seed}")
    out = getattr(args, "out", None)
    if isinstance(out, str) and os.path.isfile(out):
        raise UserError(f"--out {out} is a file; name a folder (new, or one this command wrote before)")


def _flag_type(settings: type) -> type:
    """A subclass of the config dataclass ``settings`` whose ``FIXED`` fields have no flag."""
    hints = typing.get_type_hints(settings, include_extras=True)
    fields = dataclasses.fields(settings)
    fixed = [(f.name, Annotated[hints[f.name], tyro.conf.Suppress], f) for f in fields if f.name in FIXED]
    return _derived(settings.__name__, fixed, (settings,), settings)


def _with_settings(cls: type, settings: type) -> type:
    """``cls`` with its ``settings`` field typed as ``settings`` (flattened into flags without a prefix)."""
    settings_field = dataclasses.field(default=None)
    return _derived(
        cls.__name__, [("settings", Annotated[settings, tyro.conf.arg(name="")], settings_field)], (cls,), cls
    )


def _derived(name: str, fields: list[Any], bases: tuple[type, ...], like: type) -> type:
    """A frozen dataclass made at run time that documents itself as ``like`` does (tyro reads its docstrings)."""
    made = dataclasses.make_dataclass(name, fields, bases=bases, frozen=True, namespace={"__doc__": like.__doc__})
    made.__module__ = like.__module__  # where its annotations resolve (make_dataclass says 'types' before 3.12)
    return made


def _one_line(text: str, prog: str) -> str:
    """tyro's boxed error message as one line: its title and first line of content."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [ln.strip(" │╭╮╰╯─") for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not set(ln) <= set("─ ")]
    if not lines:
        return f"bad arguments (see '{prog} --help')"
    title, body = lines[0], [ln for ln in lines[1:] if not ln.startswith(("For full helptext", "Argument helptext"))]
    first = body[0] if body else ""
    if first.endswith(":") and len(body) > 1:  # e.g. "Missing from metactl run:" then the option
        first = f"{first} {body[1]}"
    message = first if first.startswith(title) else f"{title}: {first}"
    return f"{message} (see '{prog} --help')"


def _missing_extra(e: ModuleNotFoundError) -> str | None:
    root = (e.name or "").split(".")[0]
    if root in EXTRAS:
        extra = EXTRAS[root]
        return f"this command needs the '{extra}' extra ({root} is not installed): pip install 'metactl[{extra}]'"
    return None


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Error classes whose message is a one-line user error (those of modules already imported)."""
    from metactl.controllers import AdaptationError, PolicyError

    types: list[type[BaseException]] = [UserError, AdaptationError, PolicyError]
    for module, names in (
        ("metactl.controllers.dynamics", ("DynamicsError",)),
        ("metactl.deploy.errors", ("BundleError", "HardwareConfigError")),
        ("metactl.deploy.serial_robot", ("NoHardwareError",)),
        ("metactl.sim.tasks", ("TaskError",)),
        ("metactl.train.config", ("ConfigError",)),
        ("metactl.train.workers", ("WorkerError",)),
        ("metactl.train.checkpoint", ("CheckpointError",)),
        ("metactl.videos", ("VideoError",)),
        ("metactl.deploy.firmware_build", ("FirmwareBuildError",)),
    ):
        mod = sys.modules.get(module)
        if mod is not None:
            types += [getattr(mod, n) for n in names if hasattr(mod, n)]
    return tuple(types)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        fn, args = parse(list(sys.argv[1:] if argv is None else argv))
        summary = fn(args)
    except SystemExit as e:
        return int(e.code or 0)
    except KeyboardInterrupt:
        print("metactl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`metactl ... --help | head`): quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_INTERNAL
    except ModuleNotFoundError as e:
        message = _missing_extra(e)
        if message is None:
            raise
        print(f"metactl: {message}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # one line for user errors; real bugs keep their traceback (exit 1)
        if isinstance(e, _user_error_types()):
            print(f"metactl: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
            return EXIT_USAGE
        raise
    return int(summary.get("exit_code", EXIT_OK)) if isinstance(summary, dict) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
