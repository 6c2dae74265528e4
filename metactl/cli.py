"""``metactl``: one thin command line over plain functions (train, export, run, demo, emulate, sim2real, ...).

Every command prints a summary table at the end and writes ``summary.json`` into
its output folder. User errors (bad arguments, configs, bundles, task names)
print one line naming what is wrong and how to fix it, and exit with status 2.
Robot-side commands (``run``) import no training code and no torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, NoReturn

from metactl.report import format_table, write_summary

EXIT_USAGE = 2


class UserError(Exception):
    """A problem the user can fix; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see '{self.prog} --help')")


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Error classes that carry a user-facing one-line message (imported without heavy deps)."""
    from metactl.controllers import AdaptationError, PolicyError

    types: list[type[BaseException]] = [UserError, AdaptationError, PolicyError]
    for module, names in (
        ("metactl.deploy.errors", ("BundleError", "HardwareConfigError")),
        ("metactl.deploy.serial_robot", ("NoHardwareError",)),
        ("metactl.sim.tasks", ("TaskError",)),
        ("metactl.train.config", ("ConfigError",)),
        ("metactl.train.workers", ("WorkerError",)),
    ):
        mod = sys.modules.get(module)
        if mod is not None:
            types += [getattr(mod, n) for n in names]
    return tuple(types)


ES_ONLY = (
    "baseline",
    "policy",
    "directions",
    "sigma",
    "tasks",
    "adaptation",
    "adapt_queries",
    "adapt_sigma",
    "adapt_step_size",
    "hc_mode",
    "hc_batch",
    "horizon",
    "workers",
    "address",
)
THREADS_HELP = "torch threads (default 1: these small ops run slower on more, and much slower when jobs share cores)"
MB_ONLY = (
    "rollouts",
    "episode_steps",
    "rnn_hidden",
    "window",
    "future",
    "inner_lr",
    "first_order",
    "meta_batch",
    "train_steps",
    "planner",
    "samples",
    "planning_horizon",
    "eval_steps",
)


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n) not in (None, False)]


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    if args.method != "es":
        return _train_model_based(args)
    wrong = _given(args, (*MB_ONLY, "threads"))
    if wrong:
        raise UserError(f"metactl train: {', '.join(wrong)} apply to 'metactl train grbal|rebal|mb' only")
    from metactl import train

    adaptation = None
    if args.adaptation:
        adaptation = {"name": args.adaptation}
        for key, value in (
            ("queries", args.adapt_queries),
            ("sigma", args.adapt_sigma),
            ("step_size", args.adapt_step_size),
            ("mode", args.hc_mode),
            ("batch_size", args.hc_batch),
        ):
            if value is not None:
                adaptation[key] = value
    config = train.config_for(
        args.family,
        meta=not args.baseline,
        policy=args.policy,
        hidden=tuple(args.hidden) if args.hidden else None,
        iterations=args.iterations,
        directions=args.directions,
        sigma=args.sigma,
        learning_rate=args.learning_rate,
        tasks_per_iteration=args.tasks,
        adaptation=adaptation,
        horizon=args.horizon,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    result = train.train(
        config,
        args.out,
        resume=args.resume,
        progress=not args.no_progress,
        workers=args.workers,
        backend=args.backend,
        address=args.address,
    )
    s = result.summary
    print(
        format_table(
            f"metactl train: {'ES-MAML' if config.meta else 'non-meta baseline'} on {config.family}",
            ("iterations", "episodes", "env steps", "wall s", "held-out pre", "held-out post"),
            [
                (
                    s["iterations"],
                    s["episodes"],
                    s["env_steps"],
                    s["wall_s"],
                    s["heldout_pre_adaptation_return"],
                    s["heldout_post_adaptation_return"],
                )
            ],
        )
    )
    print(f"policy: {result.policy_path}\ncurve:  {s['learning_curve']}")
    return s


def _train_model_based(args: argparse.Namespace) -> dict[str, Any]:
    wrong = _given(args, ES_ONLY)
    if wrong:
        raise UserError(f"metactl train {args.method}: {', '.join(wrong)} apply to ES training only")
    from metactl.train.mb_config import MBConfig
    from metactl.train.mb_train import train_model_based

    fields = {"family": args.family, "seed": args.seed, "method": args.method, "first_order": args.first_order}
    for name in ("iterations", "learning_rate", "eval_every", "checkpoint_every", *MB_ONLY):
        value = getattr(args, name)
        if value is not None and name != "first_order":
            fields[name] = value
    if args.hidden:
        fields["hidden"] = tuple(args.hidden)
    if args.family == "four_corners":  # the ES default is no locomotion task
        fields["family"] = MBConfig.family
    config = MBConfig(**fields)
    _torch_threads(args.threads)
    result = train_model_based(config, args.out, resume=args.resume, progress=not args.no_progress)
    s = result.summary
    rows = [(task, f"{ret:.1f}") for task, ret in s["heldout_returns"].items()]
    print(
        format_table(
            f"metactl train {config.method}: {config.family}, seed {config.seed}, {s['iterations']} iterations, "
            f"{s['env_steps']} env steps, {s['wall_s']:.0f} s",
            ("held-out task", "return"),
            rows,
        )
    )
    print(f"model: {result.model_path}\ncurve: {s['curve']}")
    return s


def cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from metactl.deploy.export import export_bundle

    model_path = os.path.join(args.run, "model.npz") if os.path.isdir(args.run) else args.run
    if os.path.basename(model_path) == "model.npz" and os.path.isfile(model_path):
        return _export_model(model_path, args.out)
    policy_path = os.path.join(args.run, "policy.npz") if os.path.isdir(args.run) else args.run
    if not os.path.exists(policy_path):
        raise UserError(f"metactl export: no trained policy at {policy_path}; pass --run with a 'metactl train' --out")
    bundle = export_bundle(policy_path, args.out)
    with open(os.path.join(bundle, "metadata.json")) as f:
        meta = json.load(f)
    summary = {
        "bundle": os.path.abspath(bundle),
        "policy": os.path.abspath(policy_path),
        "family": meta["family"],
        "obs_dim": meta["obs_dim"],
        "act_dim": meta["act_dim"],
        "num_params": meta["num_params"],
        "control_period": meta["control_period"],
    }
    print(
        format_table(
            "metactl export",
            ("bundle", "family", "obs", "act", "params", "period s"),
            [(bundle, meta["family"], meta["obs_dim"], meta["act_dim"], meta["num_params"], meta["control_period"])],
        )
    )
    write_summary(args.out, summary)
    return summary


def _export_model(model_path: str, out: str) -> dict[str, Any]:
    from metactl.deploy.model_export import export_model_bundle

    bundle = export_model_bundle(model_path, out)
    with open(os.path.join(bundle, "metadata.json")) as f:
        meta = json.load(f)
    summary = {
        "bundle": os.path.abspath(bundle),
        "model": os.path.abspath(model_path),
        "method": meta["method"],
        "family": meta["family"],
        "files": sorted(meta["files"]),
        "control_period": meta["control_period"],
    }
    print(
        format_table(
            "metactl export",
            ("bundle", "method", "family", "graphs", "period s"),
            [(bundle, meta["method"], meta["family"], ", ".join(sorted(meta["files"])), meta["control_period"])],
        )
    )
    write_summary(out, summary)
    return summary


def cmd_eval(args: argparse.Namespace) -> dict[str, Any]:
    from metactl.train.mb_eval import evaluate_runs

    _torch_threads(args.threads)
    try:
        result = evaluate_runs(args.runs, episodes=args.episodes, steps=args.steps, de_lr=args.de_lr)
    except ValueError as e:
        raise UserError(str(e)) from None
    names = {"grbal": "GrBAL", "rebal": "ReBAL", "mb": "MB", "mb_de": "MB+DE"}
    rows = []
    for mode in ("grbal", "rebal", "mb", "mb_de"):
        if mode in result["methods"]:
            n = len(next(iter(result["per_seed"][mode].values())))
            cells = [f"{result['methods'][mode][t]:.1f} ± {result['std'][mode][t]:.1f}" for t in result["tasks"]]
            rows.append((names[mode], n, *cells))
    print(
        format_table(
            f"metactl eval: held-out returns on {result['family']} (mean ± std over seeds)",
            ("method", "seeds", *result["tasks"]),
            rows,
        )
    )
    summary = {
        **result["methods"],
        "family": result["family"],
        "tasks": result["tasks"],
        "std": result["std"],
        "per_seed": result["per_seed"],
        "runs": [os.path.abspath(r) for r in args.runs],
    }
    write_summary(args.out, summary)
    return summary


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    from metactl import deploy

    config = deploy.load_hardware_config(args.config)
    report = deploy.run_online(
        args.bundle,
        config,
        task=args.task,
        adaptation_steps=args.adapt_steps,
        seed=args.seed,
        out_dir=args.out,
        progress=not args.no_progress,
        port=args.port,
        time_scale=args.time_scale,
        mode=args.mode,
    )
    summary = report.summary()
    pre = summary["pre_adaptation_return"]
    rows = [("before adaptation", 0, pre, 0.0)]
    rows += [
        (f"after adaptation step {k}", sum(e.kind == "query" and e.step <= k for e in report.episodes), ret, ret - pre)
        for k, ret in enumerate(summary["post_adaptation_returns"], start=1)
    ]
    print(
        format_table(
            f"metactl run: {config.robot_name}, task {summary['task']}, {summary['episodes']} robot episodes",
            ("policy", "query episodes so far", "return", "gain"),
            rows,
        )
    )
    if report.status != "completed":
        print(f"metactl run: {report.status}", file=sys.stderr)
    timing = summary.get("timing", {})
    if "deadline_met_fraction" in timing:
        print(
            f"loop: {timing['cycles']} cycles, {100 * timing['deadline_met_fraction']:.2f}% on time, "
            f"jitter p99 {timing['jitter_p99_ms']:.3f} ms; log: {os.path.join(args.out, 'run.mcap')}"
        )
    return summary


def cmd_emulate(args: argparse.Namespace) -> dict[str, Any]:
    import dataclasses

    from metactl.deploy import load_hardware_config
    from metactl.emulator import serve
    from metactl.emulator.scenarios import scenario

    config = load_hardware_config(args.config)
    if config.emulator is None:
        raise UserError(f"hardware config {args.config} has no [emulator] section; add one with family = ...")
    emu = config.emulator
    if args.scenario:
        try:
            emu = scenario(args.scenario, emu, len(config.signals.actions))
        except ValueError as e:
            raise UserError(str(e)) from None
    try:
        stats = serve(
            config,
            emulator=emu,
            listen=args.listen,
            port_file=args.port_file,
            busy_poll=args.busy_poll,
            announce=lambda a: print(f"metactl emulate: {config.robot.name} on {a}", flush=True),
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    print(format_table("metactl emulate: stopped", ("counter", "value"), sorted(stats.items())))
    return {"emulator": dataclasses.asdict(emu), **stats}


def cmd_sim2real(args: argparse.Namespace) -> dict[str, Any]:
    from metactl.sim2real import run_sim2real

    try:
        return run_sim2real(
            args.bundle,
            args.config,
            args.out,
            scenarios=args.scenarios.split(",") if args.scenarios else None,
            adaptation_steps=args.adapt_steps,
            seed=args.seed,
            time_scale=args.time_scale,
        )
    except ValueError as e:
        raise UserError(str(e)) from None


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from metactl.demo import run_demo

    return run_demo(
        args.out,
        family=args.family,
        seed=args.seed,
        quick=args.quick,
        progress=not args.no_progress,
        workers=args.workers,
        backend=args.backend,
        address=args.address,
    )


def cmd_families(args: argparse.Namespace) -> dict[str, Any]:
    from metactl import sim

    rows, info = [], {}
    for name in sim.FAMILIES:
        fam = sim.make_family(name)
        rows.append((name, fam.env_id, fam.obs_dim, fam.act_dim, fam.horizon, len(fam.test_tasks())))
        info[name] = {"env_id": fam.env_id, "test_tasks": [t.to_dict() for t in fam.test_tasks()]}
    print(
        format_table("metactl task families", ("family", "gymnasium id", "obs", "act", "horizon", "test tasks"), rows)
    )
    return info


def cmd_bench(args: argparse.Namespace) -> dict[str, Any]:
    if args.what == "loop":
        from metactl.bench.loop import bench_loop

        return bench_loop(args.out or "runs/bench_loop", seconds=args.seconds)
    if args.what == "fuzz":
        from metactl.bench.fuzz import bench_fuzz

        return bench_fuzz(args.out or "runs/bench_fuzz", frames=args.frames)
    if args.what == "es":
        from metactl.bench.es import bench_es

        return bench_es(args.out or "runs/bench_es", seeds=args.seeds, workers=args.workers)
    if args.what == "mpc":
        from metactl.bench.mpc import bench_mpc

        return bench_mpc(
            args.out or "runs/bench_mpc", run=args.run, steps=args.steps or 200, refit_steps=args.refit_steps,
            eval_steps=args.eval_steps, episodes=args.episodes,
        )  # fmt: skip
    from metactl.bench.rollout import bench_rollout

    return bench_rollout(args.out or "runs/bench_rollout", steps=args.steps or 20_000, ray=not args.no_ray)


def _torch_threads(threads: int | None) -> None:
    """Torch's intra-op threads for model training and planning, 1 unless given. The ops are small: one ReBAL
    training step took 22 ms on 1 thread and 26 ms on 2 (alone on 2 cores), and 22 vs 320 ms with two jobs
    sharing the 2 cores (torch's default, one thread per core each)."""
    import torch

    torch.set_num_threads(threads or 1)


def _workers(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers", type=_workers, help="rollout workers (default: one per core); speed only, never results"
    )
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="local processes or Ray")
    p.add_argument("--address", help="with --backend ray: address of an existing Ray cluster to join")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="metactl", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="meta-train: an ES-MAML policy, or a GrBAL / ReBAL / MB dynamics model")
    t.add_argument(
        "method",
        nargs="?",
        default="es",
        choices=("es", "grbal", "rebal", "mb"),
        help="es (default): ES-MAML policy; grbal, rebal, mb: dynamics model + MPC",
    )
    t.add_argument("--family", default="four_corners", help="task family (see 'metactl families')")
    t.add_argument("--out", required=True, help="output folder (checkpoints, metrics, policy.npz)")
    t.add_argument("--baseline", action="store_true", help="non-meta baseline: same ES budget, no adaptation")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--policy", choices=("linear", "mlp"))
    t.add_argument("--hidden", type=int, nargs="+", help="MLP hidden sizes, e.g. --hidden 32 32")
    t.add_argument("--iterations", type=int)
    t.add_argument("--directions", type=int, help="antithetic perturbation pairs per iteration")
    t.add_argument("--sigma", type=float, help="outer perturbation scale")
    t.add_argument("--learning-rate", type=float)
    t.add_argument("--tasks", type=int, help="training tasks per iteration")
    t.add_argument("--adaptation", choices=("es_grad", "hill_climb"))
    t.add_argument("--adapt-queries", type=int, help="episodes (K) the adaptation operator may query")
    t.add_argument("--adapt-sigma", type=float)
    t.add_argument("--adapt-step-size", type=float, help="es_grad step size (alpha)")
    t.add_argument("--hc-mode", choices=("average", "batch"))
    t.add_argument("--hc-batch", type=int)
    t.add_argument("--horizon", type=int)
    t.add_argument("--eval-every", type=int)
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--seed", type=int, default=0)
    _add_worker_args(t)
    m = t.add_argument_group("grbal / rebal / mb (defaults: train/mb_config.py)")
    m.add_argument("--rollouts", type=int, help="episodes collected per iteration")
    m.add_argument("--episode-steps", type=int, help="control steps per collected episode (0: the family's)")
    m.add_argument("--rnn-hidden", type=int, help="ReBAL LSTM size")
    m.add_argument("--window", type=int, help="M: past transitions to adapt on (default per method: DEFAULT_WINDOW)")
    m.add_argument("--future", type=int, help="K: transitions the adapted model is scored on")
    m.add_argument("--inner-lr", type=float, help="adaptation step size (alpha)")
    m.add_argument("--first-order", action="store_true", help="GrBAL: first-order meta-gradient")
    m.add_argument("--meta-batch", type=int, help="windows per gradient step")
    m.add_argument("--train-steps", type=int, help="gradient steps per iteration")
    m.add_argument("--planner", choices=("mppi", "cem", "random_shooting"))
    m.add_argument("--samples", type=int, help="planner candidates per control step")
    m.add_argument("--planning-horizon", type=int, help="planner look-ahead in control steps")
    m.add_argument("--eval-steps", type=int, help="control steps per held-out evaluation episode")
    m.add_argument("--threads", type=_workers, help=THREADS_HELP)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="held-out table of GrBAL, ReBAL, MB and MB+DE over seeds")
    ev.add_argument("runs", nargs="+", help="'metactl train grbal|rebal|mb' output folders (one family)")
    ev.add_argument("--out", default="runs/eval")
    ev.add_argument("--episodes", type=int, default=1, help="episodes per test task and run")
    ev.add_argument("--steps", type=int, default=0, help="control steps per episode (0: the family's horizon)")
    ev.add_argument("--de-lr", type=float, help="MB+DE step size (default: the run's inner_lr)")
    ev.add_argument("--threads", type=_workers, help=THREADS_HELP)
    ev.set_defaults(func=cmd_eval)

    e = sub.add_parser("export", help="export a trained policy to an ONNX bundle")
    e.add_argument("--run", required=True, help="a 'metactl train' output folder (or its policy.npz)")
    e.add_argument("--out", required=True, help="bundle folder to write")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("run", help="run a bundle on the robot named by a hardware config, adapting online")
    r.add_argument("--bundle", required=True)
    r.add_argument("--config", required=True, help="hardware config TOML, e.g. hardware_configs/sim_four_corners.toml")
    r.add_argument("--out", required=True)
    r.add_argument("--task", type=int, help="sim robot: index of the held-out test task (overrides the config)")
    r.add_argument("--adapt-steps", type=int, default=1, help="adaptation steps, each a full operator run")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--port", help="serial robot: device path or pyserial URL (overrides [serial] port)")
    r.add_argument(
        "--time-scale", type=float, help="pace at the control rate x this (default: 1 on hardware, 0 = unpaced in sim)"
    )
    r.add_argument(
        "--mode",
        choices=("grbal", "rebal", "mb", "mb_de"),
        help="model bundles: run as (default: the bundle's method; mb: frozen model; mb_de: dynamic evaluation)",
    )
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="the whole chain: meta-train, export, adapt online on held-out tasks")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--family", default="four_corners")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quick", action="store_true", help="tiny budget (smoke test)")
    _add_worker_args(d)
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)

    em = sub.add_parser("emulate", help="play the robot of a hardware config behind the serial protocol (a pty)")
    em.add_argument("--config", required=True, help="hardware config with an [emulator] section")
    em.add_argument("--listen", help="serve TCP instead of a pty, e.g. tcp://127.0.0.1:5555 (port 0: any free)")
    em.add_argument("--port-file", help="also write the device path / URL to this file")
    em.add_argument("--scenario", help="a sim2real scenario to apply (payload, latency_2, ...)")
    em.add_argument("--busy-poll", action="store_true", help="never sleep between frames (uses a whole core)")
    em.set_defaults(func=cmd_emulate)

    s2r = sub.add_parser("sim2real", help="reality-gap scenarios through the runtime over the emulator's serial link")
    s2r.add_argument("--bundle", required=True)
    s2r.add_argument("--config", required=True, help="a serial robot's hardware config with an [emulator] section")
    s2r.add_argument("--out", default="runs/sim2real")
    s2r.add_argument("--scenarios", help="comma-separated subset (default: all that fit the robot)")
    s2r.add_argument("--adapt-steps", type=int, default=1)
    s2r.add_argument("--seed", type=int, default=0)
    s2r.add_argument("--time-scale", type=float, default=1.0, help="pace at the control rate x this (10 = 10x)")
    s2r.set_defaults(func=cmd_sim2real)

    b = sub.add_parser(
        "bench",
        help="benchmarks (not tests): rollout vs raw physics, es (ARS to 3430), loop (1 kHz), fuzz (codec), mpc",
    )
    b.add_argument("what", choices=("rollout", "es", "loop", "fuzz", "mpc"))
    b.add_argument("--seconds", type=float, default=10.0, help="loop: seconds per rate")
    b.add_argument("--frames", type=int, default=1_000_000, help="fuzz: frames to feed the decoder")
    b.add_argument("--out", help="output folder (default runs/bench_<what>)")
    b.add_argument("--seeds", type=int, default=5, help="es: seeds to take the median over")
    b.add_argument("--workers", type=_workers, help="es: rollout workers (default: one per core)")
    b.add_argument("--steps", type=int, help="control steps per timed run (rollout: 20000, mpc: 200)")
    b.add_argument("--run", help="mpc: a finished 'metactl train grbal|rebal|mb' output, to also compare returns")
    b.add_argument("--refit-steps", type=int, default=3000, help="mpc: gradient steps refitting both models")
    b.add_argument("--eval-steps", type=int, default=0, help="mpc: control steps per held-out episode (0: horizon)")
    b.add_argument("--episodes", type=int, default=1, help="mpc: held-out episodes per test task")
    b.add_argument("--no-ray", action="store_true", help="skip the Ray comparison")
    b.set_defaults(func=cmd_bench)

    f = sub.add_parser("families", help="list the task families and their held-out test tasks")
    f.set_defaults(func=cmd_families)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except KeyboardInterrupt:
        print("metactl: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line for user errors; real bugs keep their traceback
        if isinstance(e, _user_error_types()):
            print(f"metactl: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
