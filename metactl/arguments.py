"""What each ``metactl`` command takes: one frozen dataclass per command, whose field docstrings are its --help.

``metactl.cli`` turns these into flags (with tyro) and hands the parsed instance to ``metactl.commands``.
Training commands also carry their config (``TrainConfig`` / ``MBConfig``) as ``settings``, flattened into
flags without a prefix.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, ClassVar, Literal

import tyro

from metactl.bench.meta_budget import Budget
from metactl.bench.rl2_budget import RL2Budget

Unset = Annotated[str, tyro.conf.arg(metavar="PATH")]


@dataclasses.dataclass(frozen=True)
class _Workers:
    workers: int | None = None
    """Rollout worker processes (default: one per core); changes the speed, never the result."""
    backend: Literal["local", "ray"] = "local"
    """Local processes or Ray (``pip install 'metactl[ray]'``)."""
    address: str | None = None
    """With --backend ray: the address of an existing Ray cluster to join."""


@dataclasses.dataclass(frozen=True)
class TrainES(_Workers):
    """Meta-train an ES-MAML policy (--no-meta: the non-meta baseline on the same ES budget)."""

    out: Unset = tyro.MISSING
    """Output folder: checkpoints, metrics.csv, TensorBoard (tb/), learning_curve.png, policy.npz, summary.json."""
    settings: Annotated[Any, tyro.conf.arg(name="")] = None
    config: str | None = None
    """Start from a saved config (a run folder, its config.json, or a TOML file) instead of the family's preset."""
    resume: bool = False
    """Continue the run in --out from its newest intact checkpoint."""
    progress: bool = True
    """Show a progress bar."""


@dataclasses.dataclass(frozen=True)
class TrainModelBased:
    """Meta-train a GrBAL / ReBAL / MB dynamics model with on-policy MPC data collection."""

    out: Unset = tyro.MISSING
    """Output folder: checkpoints, data/, metrics.csv, TensorBoard (tb/), curve.png, model.npz, summary.json."""
    settings: Annotated[Any, tyro.conf.arg(name="")] = None
    config: str | None = None
    """Start from a saved config (a run folder, its config.json, or a TOML file) instead of the defaults."""
    resume: bool = False
    """Continue the run in --out from its newest intact checkpoint."""
    progress: bool = True
    """Show a progress bar."""
    threads: int = 1
    """Torch threads (these small ops run slower on more, and much slower when jobs share cores)."""


@dataclasses.dataclass(frozen=True)
class TrainRL2:
    """Train an RL² GRU policy with PPO (Duan et al. 2016): bandits, tabular MDPs or a locomotion family."""

    out: Unset = tyro.MISSING
    """Output folder: rl2.npz, config.json, metrics.csv, summary.json."""
    settings: Annotated[Any, tyro.conf.arg(name="")] = None
    progress: bool = True
    """Show a progress bar."""
    threads: int = 1
    """Torch threads."""


@dataclasses.dataclass(frozen=True)
class Export:
    """Export a trained policy or dynamics model: an ONNX bundle, the policy as C, or a firmware built around it."""

    run: Unset = tyro.MISSING
    """A 'metactl train' output folder (or its policy.npz / model.npz; for C and firmware also a policy bundle)."""
    out: Unset = tyro.MISSING
    """Folder to write: new, empty, or an earlier export of the same kind to replace."""
    target: Literal["onnx", "c", "firmware"] = "onnx"
    """'onnx': a bundle (graphs + metadata.json); 'c': policy.h / policy.c (C99, no heap); 'firmware': the reference
    firmware with the policy built in, for --arch and the robot of --config."""
    config: str | None = None
    """--target firmware: the robot's hardware config (its id, period, watchdog, safe command, limits)."""
    arch: Literal["m4", "m3", "posix"] = "m4"
    """--target firmware: Cortex-M4F (MPS2-AN386, hard float), Cortex-M3 (MPS2-AN385, soft float) or a POSIX
    process on ptys."""


@dataclasses.dataclass(frozen=True)
class Run:
    """Run a bundle on the robot of a hardware config, adapting online.

    Exit codes: 0 completed as asked (a configured fail-over to simulation or reconnect included, recorded in
    summary.json); 1 internal error; 2 bad input; 3 robot link lost, or the robot rebooted, for good; 4 safety stop
    (limits, non-finite commands beyond safety.max_non_finite_commands) or a robot fault."""

    bundle: Unset = tyro.MISSING
    """The bundle folder ('metactl export --out')."""
    config: Unset = tyro.MISSING
    """Hardware config TOML, e.g. hardware_configs/sim_four_corners.toml."""
    out: Unset = tyro.MISSING
    """Output folder: summary.json, episodes.csv, run.mcap, adaptation.png."""
    task: int | None = None
    """Simulated robot: index of the held-out test task (overrides [sim] task)."""
    adapt_steps: int = 1
    """Adaptation steps, each a full operator run (policies) or one adapting episode (models)."""
    seed: int = 0
    """Seed of every episode seed and of the operator's noise (>= 0)."""
    port: str | None = None
    """Serial robot: device path or pyserial URL (overrides [serial] port)."""
    time_scale: float | None = None
    """Pace at the control rate x this (default: 1 on hardware, 0 = unpaced in simulation)."""
    mode: Literal["grbal", "rebal", "mb", "mb_de", "rl2", "rl2_reset"] | None = None
    """Model bundles: run as (default: the bundle's method; mb: frozen model; mb_de: dynamic evaluation); RL²
    bundles: rl2 (state carried over the episodes) or rl2_reset (zeroed every episode, the ablation)."""
    progress: bool = True
    """Log every episode."""
    live: int | None = None
    """Serve a live view of the run on this port (Foxglove: open a Foxglove WebSocket connection); 'live' extra."""
    video: bool = False
    """Write MP4s of the episodes before and after adaptation (needs the 'video' extra)."""


@dataclasses.dataclass(frozen=True)
class Eval:
    """Held-out table over seeds: GrBAL, ReBAL, MB, MB+DE runs, or ES-MAML, baseline and specialist runs."""

    runs: Annotated[tuple[str, ...], tyro.conf.Positional] = ()
    """'metactl train grbal|rebal|mb' output folders, or 'metactl train es' ones (one family)."""
    out: str = "runs/eval"
    """Output folder for summary.json."""
    episodes: int = 0
    """Episodes per held-out task and run (0: 1 for model-based runs, whose planner is slow; 10 for ES runs)."""
    steps: int = 0
    """Control steps per episode (0: the family's horizon)."""
    de_lr: float | None = None
    """MB+DE step size (default: the run's inner_lr)."""
    tasks: Literal["test", "change", "validation", "confirmation"] = "test"
    """'test': the family's held-out test tasks; 'change': its mid-episode change tests (the dynamic setting);
    'validation': training-distribution tasks, for choosing hyperparameters (never on a test task);
    'confirmation': 10 fresh training-distribution tasks, to confirm once a choice validation left in its noise."""
    oracle: bool = True
    """Also run the oracle: the same planner and settings on the true simulator, on the same episodes."""
    model_error: bool = False
    """Also measure each model's open-loop prediction error over the planning horizon, on the oracle's episodes."""
    samples: int | None = None
    """Planner candidates instead of the runs' own (choose on --tasks validation)."""
    noise_std: float | None = None
    """Planner sampling noise instead of the runs' own."""
    horizon: int | None = None
    """Planning horizon (decisions) instead of the runs' own."""
    posture_limit: float | None = None
    """Bound [rad] on the posture (HalfCheetah: torso pitch; Ant: torso tilt) in the planner's cost instead of the
    runs' (0: none)."""
    threads: int = 1
    """Torch threads."""
    video: bool = False
    """Write MP4s of the episodes of the first held-out episode per task and method (needs the 'video' extra)."""


@dataclasses.dataclass(frozen=True)
class Demo(_Workers):
    """The whole chain: meta-train ES-MAML and the baseline, export, adapt online on held-out tasks."""

    out: str = "runs/demo"
    """Output folder."""
    family: str = "four_corners"
    """Task family (see 'metactl families')."""
    seed: int = 0
    """Seed of the whole demo."""
    quick: bool = False
    """A tiny budget (smoke test)."""
    progress: bool = True
    """Show progress bars."""
    video: bool = False
    """Write MP4s of the episodes before and after adaptation (needs the 'video' extra)."""


@dataclasses.dataclass(frozen=True)
class Emulate:
    """Play the robot of a hardware config behind the serial protocol, on a pty (or TCP)."""

    config: Unset = tyro.MISSING
    """Hardware config with an [emulator] section."""
    listen: str | None = None
    """Serve TCP instead of a pty, e.g. tcp://127.0.0.1:5555 (port 0: any free port)."""
    port_file: str | None = None
    """Also write the device path / URL to this file."""
    scenario: str | None = None
    """A sim2real scenario to apply (payload, latency_2, ...)."""
    busy_poll: bool = False
    """Never sleep between frames (uses a whole core, like firmware's main loop)."""
    fault: tuple[str, ...] = ()
    """Faults to inject, seconds after the host's first frame: reboot@T, flap@T:D, garbage@T:N, delay@T:D:MS."""
    time_scale: float = 1.0
    """The robot's clock vs the wall clock (10: ten times faster, for a host run with --time-scale 10)."""
    stats_file: str | None = None
    """When stopped, write the counters, the faults injected and the timeline (JSON) here."""
    firmware: str | None = None
    """Run this firmware (an ELF for QEMU's MPS2 boards, or a POSIX build) in the loop: the config's MuJoCo robot as
    its plant on the firmware's second UART; prints the device the host connects to."""
    icount_shift: int | None = None
    """With --firmware in QEMU: -icount shift (the guest clock counts instructions; None: host time)."""
    work: str = "runs/firmware_loop"
    """With --firmware: folder for the plant's and QEMU's logs."""


@dataclasses.dataclass(frozen=True)
class Sim2Real:
    """Reality-gap scenarios through the runtime over the emulator's serial link."""

    bundle: Unset = tyro.MISSING
    """The bundle folder."""
    config: Unset = tyro.MISSING
    """A serial robot's hardware config with an [emulator] section."""
    out: str = "runs/sim2real"
    """Output folder."""
    scenarios: str | None = None
    """Comma-separated subset (default: all that fit the robot)."""
    adapt_steps: int = 1
    """Adaptation steps per scenario."""
    seed: int = 0
    """Seed of every episode."""
    time_scale: float = 1.0
    """Pace at the control rate x this (10 = ten times real time)."""
    video: bool = False
    """Write MP4s of the episodes before and after adaptation (needs the 'video' extra)."""


@dataclasses.dataclass(frozen=True)
class Families:
    """List the task families and their held-out test tasks."""


@dataclasses.dataclass(frozen=True)
class BenchRollout:
    """Rollout throughput vs raw MuJoCo physics and Gymnasium, 1 vs 2 processes, local vs Ray."""

    RUNS_WITH: ClassVar[str] = "metactl.bench.rollout:bench_rollout"
    out: str = "runs/bench_rollout"
    """Output folder."""
    steps: int = 20_000
    """Control steps per timed run."""
    ray: bool = True
    """Also compare Ray with local processes."""


@dataclasses.dataclass(frozen=True)
class BenchES:
    """Plain ES (ARS V2-t) on HalfCheetah: episodes and wall time to return 3430, median over seeds."""

    RUNS_WITH: ClassVar[str] = "metactl.bench.es:bench_es"
    out: str = "runs/bench_es"
    """Output folder."""
    seeds: int = 5
    """Seeds to take the median over."""
    workers: int | None = None
    """Rollout workers (default: one per core)."""


@dataclasses.dataclass(frozen=True)
class BenchLoop:
    """The runtime against the emulator over a pty at 500 Hz and 1 kHz: deadlines, jitter, lost frames."""

    RUNS_WITH: ClassVar[str] = "metactl.bench.loop:bench_loop"
    out: str = "runs/bench_loop"
    """Output folder."""
    seconds: float = 10.0
    """Seconds per rate."""


@dataclasses.dataclass(frozen=True)
class BenchFaults:
    """The runtime vs an emulated robot that reboots, flaps, sends garbage and answers late, at 10x real time."""

    RUNS_WITH: ClassVar[str] = "metactl.bench.faults:bench_faults"
    out: str = "runs/bench_faults"
    """Output folder."""
    robot_hours: float = 1.0
    """Commanded robot time to cover, over as many runs as it takes."""
    time_scale: float = 10.0
    """Robot and host clocks vs the wall clock (10: ten times faster than real time)."""
    faults_per_run: int = 4
    """Faults per run, at random robot times within its first 100 s."""
    adapt_steps: int = 1
    """Adaptation steps per run (each run: the episodes of these steps, then a final one)."""
    seed: int = 0
    """Seed of the fault schedules and the runs."""


@dataclasses.dataclass(frozen=True)
class BenchFuzz:
    """A million random, truncated, corrupted and oversized frames through the protocol decoder."""

    RUNS_WITH: ClassVar[str] = "metactl.bench.fuzz:bench_fuzz"
    out: str = "runs/bench_fuzz"
    """Output folder."""
    frames: int = 1_000_000
    """Frames to feed the decoder."""


@dataclasses.dataclass(frozen=True)
class BenchMeta:
    """MAML, first-order MAML, iMAML, Evo-MAML and the inner steps (SGD, Meta-SGD, LSTM) on the sinusoid and on
    HalfCheetah dynamics: error after 1 and 10 steps, time and memory per meta-step, choices made on validation."""

    RUNS_WITH: ClassVar[str] = "metactl.bench.meta:bench_meta"
    out: str = "runs/bench_meta"
    """Output folder."""
    problems: tuple[Literal["sinusoid", "cheetah"], ...] = ("sinusoid", "cheetah")
    """Which problems to run."""
    budget: Budget = dataclasses.field(default_factory=Budget)
    """Sizes of the run."""


@dataclasses.dataclass(frozen=True)
class BenchRL2:
    """RL² vs random, greedy, epsilon-greedy, UCB1, Thompson, Gittins (bandits) and PSRL (tabular MDPs): total
    reward per trial, mean ± standard error on the same held-out tasks."""

    RUNS_WITH: ClassVar[str] = "metactl.bench.rl2:bench_rl2"
    out: str = "runs/bench_rl2"
    """Output folder."""
    families: tuple[Literal["bandit", "mdp"], ...] = ("bandit", "mdp")
    """Which tables to make."""
    budget: RL2Budget = dataclasses.field(default_factory=RL2Budget)
    """Sizes of the run."""


@dataclasses.dataclass(frozen=True)
class BenchFirmware:
    """Flash, RAM and instructions per inference of the firmware (linear, MLP 32x32, 64x64) in QEMU, vs emlearn."""

    RUNS_WITH: ClassVar[str] = "metactl.bench.firmware:bench_firmware"
    out: str = "runs/bench_firmware"
    """Output folder."""
    calls: int = 1000
    """Inferences timed per network (QEMU -icount: exact instruction counts)."""


@dataclasses.dataclass(frozen=True)
class BenchInference:
    """Host inference at batch 1: onnxruntime with folded vs overridable parameters vs numpy vs the C export."""

    RUNS_WITH: ClassVar[str] = "metactl.bench.inference:bench_inference"
    out: str = "runs/bench_inference"
    """Output folder."""
    calls: int = 20_000
    """Calls timed per path."""


@dataclasses.dataclass(frozen=True)
class BenchFirmwareLoop:
    """The Python runtime vs the firmware in QEMU on one bundle: returns and action parity, closed loop."""

    RUNS_WITH: ClassVar[str] = "metactl.bench.firmware_loop:bench_firmware_loop"
    bundle: Unset = tyro.MISSING
    """A HalfCheetah policy bundle."""
    out: str = "runs/bench_firmware_loop"
    """Output folder."""
    paced: bool = False
    """Pace in real time (no -icount) instead of unpaced under -icount."""


@dataclasses.dataclass(frozen=True)
class BenchMPC:
    """Adapt + plan time per control step on one core: the reference configuration vs our default."""

    RUNS_WITH: ClassVar[str] = "metactl.bench.mpc:bench_mpc"
    out: str = "runs/bench_mpc"
    """Output folder."""
    run: str | None = None
    """A finished 'metactl train grbal|rebal|mb' output, to refit both models on its data and compare returns."""
    steps: int = 200
    """Timed control steps per configuration."""
    refit_steps: int = 3000
    """Gradient steps refitting both models."""
    eval_steps: int = 0
    """Control steps per held-out episode (0: the horizon)."""
    episodes: int = 1
    """Held-out episodes per test task."""


@dataclasses.dataclass(frozen=True)
class LogCheck:
    """Whether a run log (run.mcap) is complete: summary, footer and every CRC (exit 0), or where it was cut (2)."""

    file: Annotated[str, tyro.conf.Positional] = tyro.MISSING
    """The MCAP log."""


@dataclasses.dataclass(frozen=True)
class LogRecover:
    """Rewrite a cut run log (a killed run) into a complete, indexed one holding every whole chunk."""

    file: Annotated[str, tyro.conf.Positional] = tyro.MISSING
    """The damaged MCAP log."""
    out: str | None = None
    """Where to write the recovered log (default: FILE with .recovered.mcap)."""
