"""``metactl``: one thin command line over plain functions (train, export, run, demo, families).

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
    from controllers import AdaptationError, PolicyError

    types: list[type[BaseException]] = [UserError, AdaptationError, PolicyError]
    for module, names in (
        ("deploy.errors", ("BundleError", "HardwareConfigError")),
        ("sim.tasks", ("TaskError",)),
        ("train.config", ("ConfigError",)),
        ("train.workers", ("WorkerError",)),
    ):
        mod = sys.modules.get(module)
        if mod is not None:
            types += [getattr(mod, n) for n in names]
    return tuple(types)


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    import train

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


def cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from deploy.export import export_bundle

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


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    import deploy

    config = deploy.load_hardware_config(args.config)
    report = deploy.run_online(
        args.bundle,
        config,
        task=args.task,
        adaptation_steps=args.adapt_steps,
        seed=args.seed,
        out_dir=args.out,
        progress=not args.no_progress,
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
    return summary


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
    import sim

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
    if args.what == "es":
        from metactl.bench_es import bench_es

        return bench_es(args.out or "runs/bench_es", seeds=args.seeds, workers=args.workers)
    from metactl.bench import bench_rollout

    return bench_rollout(args.out or "runs/bench_rollout", steps=args.steps, ray=not args.no_ray)


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

    t = sub.add_parser("train", help="meta-train a policy with ES-MAML (or the non-meta baseline)")
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
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)

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

    b = sub.add_parser("bench", help="benchmarks (not tests): 'rollout' vs raw physics, 'es' ARS to 3430")
    b.add_argument("what", choices=("rollout", "es"))
    b.add_argument("--out", help="output folder (default runs/bench_<what>)")
    b.add_argument("--seeds", type=int, default=5, help="es: seeds to take the median over")
    b.add_argument("--workers", type=_workers, help="es: rollout workers (default: one per core)")
    b.add_argument("--steps", type=int, default=20_000, help="control steps per timed run")
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
