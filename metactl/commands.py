"""What each ``metactl`` command does once its arguments are parsed: call the library, print a summary table.

Plain functions over the argument dataclasses of ``metactl.cli``, so tests can call them directly. Each returns
the command's summary dict; a run that did not complete as asked carries ``exit_code`` (see ``deploy.report``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from metactl.report import format_table, mean_se
from metactl.summary import write_summary

if TYPE_CHECKING:
    from metactl import arguments as cli


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def train_es(cmd: cli.TrainES) -> dict[str, Any]:
    from metactl import train

    config = cmd.settings
    result = train.train(
        config,
        cmd.out,
        resume=cmd.resume,
        progress=cmd.progress,
        workers=cmd.workers,
        backend=cmd.backend,
        address=cmd.address,
    )
    s = result.summary
    label = train.run_label(config)
    headers = ("iterations", "episodes", "env steps", "wall s", "held-out pre", "held-out post")
    row = (s["iterations"], s["episodes"], s["env_steps"], s["wall_s"], s["heldout_pre_adaptation_return"],
           s["heldout_post_adaptation_return"])  # fmt: skip
    print(format_table(f"metactl train es: {label} on {config.family}", headers, [row]))
    print(f"policy: {result.policy_path}\ncurve:  {s['learning_curve']}")
    return s


def train_model_based(cmd: cli.TrainModelBased) -> dict[str, Any]:
    from metactl.train.mb_train import train_model_based as train_mb

    torch_threads(cmd.threads)
    config = cmd.settings
    result = train_mb(config, cmd.out, resume=cmd.resume, progress=cmd.progress)
    s = result.summary
    rows = [(task, f"{ret:.1f}") for task, ret in s["heldout_returns"].items()]
    title = (f"metactl train {config.method}: {config.family}, seed {config.seed}, {s['iterations']} iterations, "
             f"{s['env_steps']} env steps, {s['wall_s']:.0f} s")  # fmt: skip
    print(format_table(title, ("held-out task", "return"), rows))
    print(f"model: {result.model_path}\ncurve: {s['curve']}")
    return s


def train_rl2(cmd: cli.TrainRL2) -> dict[str, Any]:
    """RL² (Duan et al. 2016): a GRU policy trained with PPO over trials of ``episodes`` episodes."""
    from metactl.train.rl2 import train_rl2 as run_rl2

    torch_threads(cmd.threads)
    config = cmd.settings
    try:
        result = run_rl2(config, cmd.out, progress=cmd.progress)
    except ValueError as e:
        raise UserError(str(e)) from None
    s = result.summary
    row = (s["iterations"], s["trials_seen"], s["env_steps"], f"{s['wall_s']:.0f}",
           f"{s['heldout_trial_reward_mean']:.2f} ± {s['heldout_trial_reward_se']:.2f}")  # fmt: skip
    title = f"metactl train rl2: {config.family}, {config.episodes} episodes per trial, seed {config.seed}"
    print(format_table(title, ("iterations", "trials", "env steps", "wall s", "held-out reward per trial"), [row]))
    if "test_episode_returns" in s:  # locomotion: the family's test tasks, return of each episode of one trial
        runs = [s[f"test_episode_returns{k}"] for k in ("", "_state_reset", "_zero_action")]
        rows = [(json.dumps(t), *(" / ".join(f"{x:.1f}" for x in r[i]) for r in runs))
                for i, t in enumerate(s["test_tasks"])]  # fmt: skip
        print(format_table("held-out test tasks: return per episode", ("task", "RL²", "state reset", "zero"), rows))
    print(f"model: {result.model_path}")
    return s


def export(cmd: cli.Export) -> dict[str, Any]:
    """ONNX bundle of a policy or a dynamics model (picked from the run's files), or the policy as C / firmware."""
    if cmd.target != "onnx":
        return _export_native(cmd)
    from metactl.controllers.serialization import MODEL_FILE, POLICY_FILE, run_file

    run = cmd.run
    # (the run's file, its exporter); a file given directly goes by its name, any other file is a policy
    exporters = (("rl2.npz", "metactl.deploy.rl2_export:export_rl2_bundle"),
                 (MODEL_FILE, "metactl.deploy.model_export:export_model_bundle"),
                 (POLICY_FILE, "metactl.deploy.export:export_bundle"))  # fmt: skip
    candidates = ((run_file(run, name), name, target) for name, target in exporters)
    found = next(((path, target) for path, name, target in candidates
                  if os.path.isfile(path) and name in (POLICY_FILE, os.path.basename(path))), None)  # fmt: skip
    if found is None:
        raise UserError(f"no trained policy or model at {run}; pass --run with a 'metactl train' --out folder")
    source, target = found
    module, function = target.split(":")
    getattr(importlib.import_module(module), function)(source, cmd.out)
    with open(os.path.join(cmd.out, "metadata.json")) as f:
        meta = json.load(f)
    summary = {
        "bundle": os.path.abspath(cmd.out),
        "source": os.path.abspath(source),
        "kind": meta["bundle_kind"],
        "family": meta["family"],
        "files": sorted(meta["files"]),
        "control_period": meta["control_period"],
    }
    rows = [(cmd.out, meta["bundle_kind"], meta.get("method", "es"), meta["family"], ", ".join(sorted(meta["files"])),
             meta["control_period"])]  # fmt: skip
    print(format_table("metactl export", ("bundle", "kind", "method", "family", "graphs", "period s"), rows))
    write_summary(cmd.out, summary)  # a bundle folder only ever holds a bundle (and its export summary)
    return summary


def _export_native(cmd: cli.Export) -> dict[str, Any]:
    """``--target c``: policy.h / policy.c; ``--target firmware``: the firmware built for a robot and an arch."""
    if not os.path.exists(cmd.run):
        raise UserError(f"no trained policy or bundle at {cmd.run}; pass a 'metactl train es' output or a bundle")
    if cmd.target == "c":
        from metactl.deploy.c_export import export_c

        files = export_c(cmd.run, cmd.out)
        rows = [(k, v) for k, v in files.items()]
        print(format_table(f"metactl export --target c: {cmd.run}", ("", ""), rows))
        summary = {"target": "c", "source": os.path.abspath(cmd.run), **files}
    else:
        from metactl.deploy.firmware_build import build_firmware

        if cmd.config is None:
            raise UserError("--target firmware needs --config: the robot's hardware config (id, period, limits)")
        build = build_firmware(cmd.run, cmd.config, cmd.out, cmd.arch)
        print(format_table("metactl export --target firmware", ("target", "program"), [(build.target, build.path)]))
        summary = {"target": "firmware", "arch": build.target, "program": build.path, "source": cmd.run}
    write_summary(cmd.out, summary)
    return summary


def evaluate(cmd: cli.Eval) -> dict[str, Any]:
    from metactl.es_eval import evaluate_es, is_es_run

    if not cmd.runs:
        raise UserError("metactl eval: name at least one 'metactl train es|grbal|rebal|mb' output folder")
    if any(is_es_run(r) for r in cmd.runs):
        return evaluate_es(cmd)
    from metactl.train.heldout_table import evaluate_runs

    torch_threads(cmd.threads)
    try:
        result = evaluate_runs(list(cmd.runs), episodes=cmd.episodes or 1, steps=cmd.steps, de_lr=cmd.de_lr,
                               tasks=cmd.tasks, oracle=cmd.oracle, model_error=cmd.model_error,
                               video_dir=cmd.out if cmd.video else None, planner=_planner_override(cmd),
                               posture_limit=cmd.posture_limit)  # fmt: skip
    except ValueError as e:
        raise UserError(str(e)) from None
    _print_eval(result)
    write_summary(cmd.out, result)
    return result


TERMS = ("returns", "progress", "progress_after")
"""The eval table's per-seed terms shown as mean ± standard error."""
NAMES = {"grbal": "GrBAL", "frozen": "GrBAL frozen", "rebal": "ReBAL", "rebal_frozen": "ReBAL frozen", "mb": "MB",
         "mb_de": "MB+DE", "oracle": "oracle"}  # fmt: skip


def _print_eval(result: dict[str, Any]) -> None:
    """Return and forward progress (mean ± standard error over seeds) per task, the share of steps spent on the
    robot's back, and each method's share of the oracle's progress."""
    for task in result["tasks"]:
        rows = []
        for mode, name in NAMES.items():
            if mode not in result["returns"]:
                continue
            n = len(result["per_seed"][mode][task])
            share = result.get(f"{mode}_vs_oracle", {}).get(task)
            after, flipped = result["progress_after"][mode][task], result["upside_down"][mode][task]
            cells = {t: mean_se(result[t][mode][task], result[f"{t}_se"][mode][task], n) for t in TERMS}
            rows.append((name, n, cells["returns"], cells["progress"],
                         f"{result['ctrl_cost'][mode][task]:.1f}", f"{result['alive'][mode][task]:.1f}",
                         "-" if after != after else cells["progress_after"],
                         "-" if flipped != flipped else f"{flipped:.2f}",
                         "-" if share is None else f"{share:.2f}"))  # fmt: skip
        title = (f"metactl eval: {result['family']}, {task} ({result['episodes']} episodes per seed, mean ± SE over "
                 f"seeds; horizon {', '.join(f'{h:g}' for h in result['horizon_s'])} s)")  # fmt: skip
        headers = ("method", "seeds", "return", "progress", "ctrl cost", "alive", "progress after change",
                   "upside down", "vs oracle")  # fmt: skip
        print(format_table(title, headers, rows))
    for key, name in (("adapt_vs_frozen", "GrBAL"), ("rebal_adapt_vs_frozen", "ReBAL")):
        for task, d in result.get(key, {}).items():
            n = d["seeds"]
            line = f"{name} adapting - frozen on {task}: return {mean_se(d['return_diff'], d['se'], n, signed=True)}"
            if "progress_after_diff" in d:
                after = mean_se(d["progress_after_diff"], d["progress_after_se"], n, signed=True)
                line += f", progress after the change {after}"
            print(f"{line} (SE over {d['seeds']} seeds)")


def run(cmd: cli.Run) -> dict[str, Any]:
    from metactl import deploy

    if cmd.adapt_steps < 1:
        raise UserError(f"--adapt-steps must be >= 1 (each step is one adaptation), got {cmd.adapt_steps}")
    if cmd.time_scale is not None and not (cmd.time_scale >= 0 and cmd.time_scale < float("inf")):
        raise UserError(f"--time-scale must be a finite number >= 0 (0: unpaced), got {cmd.time_scale}")
    if cmd.live is not None and not 0 <= cmd.live <= 65535:
        raise UserError(f"--live must be a port number 0..65535, got {cmd.live}")
    config = deploy.load_hardware_config(cmd.config)
    observers = []
    if cmd.live is not None:
        from metactl.live import LiveView

        observers.append(LiveView(port=cmd.live))
        print(f"metactl run: live view on {observers[0].url} (Foxglove: open connection, Foxglove WebSocket)")
    try:
        report = deploy.run_online(cmd.bundle, config, task=cmd.task, adaptation_steps=cmd.adapt_steps,
                                   seed=cmd.seed, out_dir=cmd.out, progress=cmd.progress, port=cmd.port,
                                   time_scale=cmd.time_scale, mode=cmd.mode, record=cmd.video,
                                   observers=observers)  # fmt: skip
    finally:
        for view in observers:
            view.close()
    summary = report.summary()
    if cmd.video:
        summary = {**summary, "videos": _videos(report, config, cmd.out)}
    pre = summary["pre_adaptation_return"]
    rows = [("before adaptation", 0, pre, 0.0)]
    rows += [
        (f"after adaptation step {k}", sum(e.kind == "query" and e.step <= k for e in report.episodes), ret, ret - pre)
        for k, ret in enumerate(summary["post_adaptation_returns"], start=1)
    ]
    title = f"metactl run: {config.robot_name}, task {summary['task']}, {summary['episodes']} robot episodes"
    print(format_table(title, ("policy", "query episodes so far", "return", "gain"), rows))
    if report.status != "completed":
        print(f"metactl run: {report.status}: {report.detail} (exit {report.exit_code})", file=sys.stderr)
    timing = summary.get("timing", {})
    if "deadline_met_fraction" in timing:
        print(f"loop: {timing['cycles']} cycles, {100 * timing['deadline_met_fraction']:.2f}% on time, "
              f"jitter p99 {timing['jitter_p99_ms']:.3f} ms; log: {os.path.join(cmd.out, 'run.mcap')}")  # fmt: skip
    return summary


def _videos(report: Any, config: Any, out: str) -> dict[str, str]:
    """Render the run's pre and post episodes and link them from its summary.json."""
    from metactl.videos import report_videos

    videos = report_videos(report, config, out)
    with open(os.path.join(out, "summary.json")) as f:
        saved = json.load(f)
    write_summary(out, {**saved, "videos": videos})
    for name, path in videos.items():
        print(f"video ({name}): {path}")
    return videos


def emulate(cmd: cli.Emulate) -> dict[str, Any]:
    import dataclasses

    from metactl.deploy import load_hardware_config
    from metactl.emulator import serve
    from metactl.emulator.scenarios import scenario

    config = load_hardware_config(cmd.config)
    if config.emulator is None:
        raise UserError(f"hardware config {cmd.config} has no [emulator] section; add one with family = ...")
    if cmd.firmware is not None:
        from metactl.emulator.firmware_loop import serve_firmware_in_the_loop

        if not os.path.isfile(cmd.firmware):
            raise UserError(f"--firmware {cmd.firmware}: no such file; build one with metactl export --target firmware")
        serve_firmware_in_the_loop(cmd.firmware, cmd.config, cmd.work, icount_shift=cmd.icount_shift,
                                   announce=lambda a: print(f"metactl emulate: {a}", flush=True))  # fmt: skip
        return {"firmware": os.path.abspath(cmd.firmware), "work": os.path.abspath(cmd.work)}
    emu = config.emulator
    try:
        if cmd.scenario:
            emu = scenario(cmd.scenario, emu, len(config.signals.actions))
        announce = lambda a: print(f"metactl emulate: {config.robot.name} on {a}", flush=True)  # noqa: E731
        stats = serve(config, emulator=emu, listen=cmd.listen, port_file=cmd.port_file, busy_poll=cmd.busy_poll,
                      announce=announce, faults=cmd.fault, time_scale=cmd.time_scale)  # fmt: skip
    except ValueError as e:
        raise UserError(str(e)) from None
    if cmd.stats_file is not None:
        from metactl.summary import write_summary

        write_summary(os.path.dirname(os.path.abspath(cmd.stats_file)), stats, os.path.basename(cmd.stats_file))
    rows = sorted((k, v) for k, v in stats.items() if not isinstance(v, list))
    print(format_table("metactl emulate: stopped", ("counter", "value"), rows))
    for t, spec in stats.get("faults_injected", []):
        print(f"fault injected at {t:.3f} s: {spec}")
    return {"emulator": dataclasses.asdict(emu), **stats}


def sim2real(cmd: cli.Sim2Real) -> dict[str, Any]:
    from metactl.sim2real import run_sim2real

    try:
        return run_sim2real(cmd.bundle, cmd.config, cmd.out, scenarios=cmd.scenarios.split(",") if cmd.scenarios
                            else None, adaptation_steps=cmd.adapt_steps, seed=cmd.seed,
                            time_scale=cmd.time_scale, video=cmd.video)  # fmt: skip
    except ValueError as e:
        raise UserError(str(e)) from None


def demo(cmd: cli.Demo) -> dict[str, Any]:
    from metactl.demo import run_demo

    return run_demo(cmd.out, family=cmd.family, seed=cmd.seed, quick=cmd.quick, progress=cmd.progress,
                    workers=cmd.workers, backend=cmd.backend, address=cmd.address, video=cmd.video)  # fmt: skip


def families(cmd: cli.Families) -> dict[str, Any]:
    from metactl import sim

    rows, info = [], {}
    for name in sim.FAMILIES:
        fam = sim.make_family(name)
        rows.append((name, fam.env_id, fam.obs_dim, fam.act_dim, fam.horizon, len(fam.test_tasks())))
        info[name] = {"env_id": fam.env_id, "test_tasks": [t.to_dict() for t in fam.test_tasks()]}
    headers = ("family", "gymnasium id", "obs", "act", "horizon", "test tasks")
    print(format_table("metactl task families", headers, rows))
    return info


def log_check(cmd: cli.LogCheck) -> dict[str, Any]:
    from metactl.deploy.mcap_reader import check

    if not os.path.isfile(cmd.file):
        raise UserError(f"no log at {cmd.file}; pass a run's run.mcap")
    found = check(cmd.file)
    rows = [("complete", found.complete), ("messages", found.messages), ("chunks", found.chunks),
            *sorted(found.topics.items())]  # fmt: skip
    print(format_table(f"metactl log check: {cmd.file}", ("", "value"), rows))
    if not found.complete:
        print(f"metactl log check: {found.problem}; 'metactl log recover {cmd.file}' rewrites it", file=sys.stderr)
    summary = dataclasses.asdict(found)
    return {**summary, "exit_code": 0 if found.complete else 2}


def log_recover(cmd: cli.LogRecover) -> dict[str, Any]:
    from metactl.deploy.mcap_reader import LogError, check, recover

    if not os.path.isfile(cmd.file):
        raise UserError(f"no log at {cmd.file}; pass a run's run.mcap")
    out = cmd.out or (cmd.file[: -len(".mcap")] if cmd.file.endswith(".mcap") else cmd.file) + ".recovered.mcap"
    if os.path.exists(out):
        raise UserError(f"--out {out} exists; choose a new file name")
    before = check(cmd.file)
    try:
        after = recover(cmd.file, out)
    except LogError as e:
        raise UserError(str(e)) from None
    rows = [("messages", before.messages, after.messages), ("chunks", before.chunks, after.chunks),
            ("complete", before.complete, after.complete)]  # fmt: skip
    print(format_table(f"metactl log recover: {cmd.file} -> {out}", ("", "before", "after"), rows))
    return {"recovered": out, "messages": after.messages, "complete": after.complete}


def _planner_override(cmd: cli.Eval) -> dict[str, Any]:
    """The planner settings ``metactl eval`` was told to use instead of each run's own."""
    given = {"samples": cmd.samples, "noise_std": cmd.noise_std, "horizon": cmd.horizon}
    for name, value in given.items():
        if value is not None and not value > 0:
            raise UserError(f"--{name.replace('_', '-')} {value}: must be > 0")
    return {k: v for k, v in given.items() if v is not None}


def bench(cmd: Any) -> dict[str, Any]:
    """Every ``metactl bench <what>`` argument class names its function (``RUNS_WITH``); its fields are the keywords."""
    module, name = cmd.RUNS_WITH.split(":")
    kwargs = {f.name: getattr(cmd, f.name) for f in dataclasses.fields(cmd)}  # nested settings stay dataclasses
    kwargs["out_dir"] = kwargs.pop("out")
    return getattr(importlib.import_module(module), name)(**kwargs)


def torch_threads(threads: int) -> None:
    """Torch's intra-op threads for model training and planning. The ops are small: one ReBAL training step took
    22 ms on 1 thread and 26 ms on 2 (alone on 2 cores), and 22 vs 320 ms with two jobs sharing the 2 cores."""
    import torch

    torch.set_num_threads(threads)
