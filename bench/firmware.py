"""``metactl bench firmware``: what the policy costs on a microcontroller, measured (not estimated).

For a linear HalfCheetah policy, an MLP 32x32 and an MLP 64x64 (17 observations, 6 actions):

- flash and RAM of the whole reference firmware (protocol, control loop, policy; ``arm-none-eabi-size``:
  flash = text + data, RAM = data + bss, a 1 KB stack reserve included), hard-float Cortex-M4F (MPS2-AN386)
  and soft-float Cortex-M3 (MPS2-AN385);
- instructions per inference: a benchmark program times ``calls`` calls under QEMU ``-icount shift=0`` (one
  guest instruction = 1 ns) with the 25 MHz Timer0 (40 instructions per tick), minus an empty function's count
  through the same call path; the implied time at 168 MHz assumes one instruction per cycle (a lower bound:
  loads, VDIV and flash wait states take more);
- in the same QEMU run, emlearn's C (PyPI ``emlearn``, ``eml_net``) where it can express the network, and on
  the M4 a build of our C with newlib's ``tanhf`` (the naive baseline);
- parity: every candidate's actions for the recorded observations (plus rows with +-inf, NaN and 1e30), as
  computed by the timed binary, against onnxruntime.

Needs Debian's ``gcc-arm-none-eabi``, ``libnewlib-arm-none-eabi`` and ``qemu-system-arm``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from typing import Any

import numpy as np

from metactl.controllers import NormalizerSnapshot, Policy, PolicySpec
from metactl.deploy.firmware_build import FirmwareBuildError, build_firmware, firmware_size, tools_missing
from metactl.hardware_configs import config_path
from metactl.report import format_table
from metactl.summary import write_summary

CONFIG = config_path("serial_halfcheetah_fb")
NETWORKS = {"linear": (), "mlp 32x32": (32, 32), "mlp 64x64": (64, 64)}
TARGETS = {"m4": ("mps2-an386", "Cortex-M4F hard float"), "m3": ("mps2-an385", "Cortex-M3 soft float")}
CLOCK_HZ = 168e6
INSTRUCTIONS_PER_TICK = 40  # 1 GHz of guest instructions (-icount shift=0) / 25 MHz timer
TARGETS_OK = {"flash": 16 * 1024, "ram": 4 * 1024, "linear": 1000, "mlp 64x64": 30_000}
"""The issue's targets: linear firmware in 16 KB flash / 4 KB RAM; linear <= 1,000 and MLP 64x64 <= 30,000
instructions per inference (hard float)."""


def bench_firmware(out_dir: str, *, calls: int = 1000, samples: int = 24, seed: int = 0) -> dict[str, Any]:
    """Build and run everything (a few minutes); print the table and write ``out_dir/summary.json``."""
    missing = tools_missing("m4")
    if missing:
        raise FirmwareBuildError(f"bench firmware needs {', '.join(missing)} (apt-get install gcc-arm-none-eabi "
                                 "libnewlib-arm-none-eabi qemu-system-arm)")  # fmt: skip
    os.makedirs(out_dir, exist_ok=True)
    rows = [measure_network(name, hidden, os.path.join(out_dir, name.replace(" ", "_")), calls=calls,
                            samples=samples, seed=seed) for name, hidden in NETWORKS.items()]  # fmt: skip
    summary = {"calls": calls, "clock_hz": CLOCK_HZ, "networks": rows, "targets": TARGETS_OK}
    write_summary(out_dir, summary)
    print(format_table("metactl bench firmware (measured: arm-none-eabi-size, QEMU -icount shift=0)",
                       *_table(rows)))  # fmt: skip
    return summary


def measure_network(
    name: str,
    hidden: tuple[int, ...],
    work: str,
    *,
    targets: tuple[str, ...] = tuple(TARGETS),
    calls: int = 1000,
    samples: int = 24,
    seed: int = 0,
    baselines: bool = True,
) -> dict[str, Any]:
    """One row of the table: firmware size and per-candidate inference cost and parity on each target.
    ``baselines``: also newlib's tanhf (M4) and emlearn."""
    policy = bench_policy(hidden, seed)
    obs = _observations(policy, samples, seed)
    want = _onnxruntime(policy, obs)
    row: dict[str, Any] = {"network": name, "params": policy.spec.num_params}
    for target in targets:
        machine = TARGETS[target][0]
        size = firmware_size(build_firmware(policy, CONFIG, os.path.join(work, "fw"), target).path)
        row[f"{target}_flash"], row[f"{target}_ram"] = size["flash"], size["ram"]
        runs = _bench(policy, obs, want, os.path.join(work, f"bench_{target}"), target, machine, calls, baselines)
        if target == "m4" and baselines:
            runs.update(_bench(policy, obs, want, os.path.join(work, "bench_libm"), target, machine, calls, libm=True))
        for cand, result in runs.items():
            for key, value in result.items():
                row[f"{target}_{cand}_{key}"] = value
    return row


def bench_policy(hidden: tuple[int, ...], seed: int) -> Policy:
    """A HalfCheetah-sized policy (17 -> hidden -> 6) with seeded parameters and normalizer: costs do not depend on
    the values, parity is checked for these."""
    rng = np.random.default_rng(seed)
    spec = PolicySpec("mlp" if hidden else "linear", 17, 6, (-1.0,) * 6, (1.0,) * 6, hidden)
    params = spec.init_params(rng) if hidden else rng.standard_normal(spec.num_params) * 0.1
    return Policy(spec, params, NormalizerSnapshot(rng.standard_normal(17) * 0.1, rng.uniform(0.5, 5.0, 17)))


def _observations(policy: Policy, samples: int, seed: int) -> np.ndarray:
    """``samples - 3`` states of a MuJoCo HalfCheetah episode driven by ``policy``, then +-inf, NaN and 1e30 rows."""
    from metactl.deploy import SimRobot

    robot = SimRobot("halfcheetah_fb", 0, seed)
    robot.reset(seed)
    rec = [robot.read_state().obs]
    while len(rec) < samples - 3:
        robot.write_command(policy.act(rec[-1]))
        rec.append(robot.read_state().obs)
    special = np.tile(rec[0], (3, 1))
    special[0, [0, 5]], special[1, 3], special[2, [2, 9]] = (np.inf, -np.inf), np.nan, (1e30, -1e30)
    return np.vstack([rec, special]).astype(np.float32)


def _onnxruntime(policy: Policy, obs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    from metactl.deploy.export import build_model
    from metactl.deploy.graphs import session_options

    model = build_model(policy).SerializeToString()
    session = ort.InferenceSession(model, session_options(), providers=["CPUExecutionProvider"])
    return session.run(["action"], {"obs": obs})[0]


def _bench(policy, obs, want, work, target, machine, calls, emlearn=True, libm=False) -> dict[str, dict[str, Any]]:
    """Build the benchmark program for ``target`` and run it in QEMU; per candidate: instructions and parity."""
    os.makedirs(work, exist_ok=True)
    candidates = {"metactl_libm" if libm else "metactl": "metactl_policy"}
    extra, sources = "", []
    if emlearn and not libm:
        emlearn = _emlearn_source(policy)
        if isinstance(emlearn, str):
            with open(os.path.join(work, "emlearn_policy.c"), "w") as f:
                f.write(emlearn)
            sources.append(os.path.join(work, "emlearn_policy.c"))
            candidates["emlearn"] = "emlearn_policy"
            extra = "void emlearn_policy(const float *obs, float *action);\n"
    _write_bench_data(work, obs, calls, candidates, extra)
    variables = {"BENCH_DIR": work, "BENCH_SRCS": " ".join(sources)}
    if libm:
        variables["EXTRA_CFLAGS"] = "-DMETACTL_LIBM_TANH"
    if sources:
        import emlearn

        variables["BENCH_SRC_CFLAGS"] = f"-I{emlearn.includedir} -w"
    elf = build_firmware(policy, CONFIG, work, target, program="bench", make_vars=variables).path
    counts, outputs, stack = _parse(_qemu(elf, machine, os.path.join(work, "uart0.txt")))
    results = {}
    for cand in candidates:
        got = outputs[cand]
        finite = ~np.isnan(want)
        results[cand] = {
            "instructions": (counts[cand] - counts["nop"]) * INSTRUCTIONS_PER_TICK / calls,
            "max_abs_diff_vs_ort": float(np.abs(got[finite] - want[finite]).max()),
            "nan_rows_agree": bool(np.array_equal(np.isnan(got), np.isnan(want))),
            "stack_bytes": stack,
        }
        results[cand]["us_at_168MHz"] = results[cand]["instructions"] / CLOCK_HZ * 1e6
    if emlearn and not libm and "emlearn" not in candidates:
        results["emlearn"] = {"not_expressible": _emlearn_source(policy)}
    return results


def _write_bench_data(work: str, obs: np.ndarray, calls: int, candidates: dict[str, str], extra: str) -> None:
    rows = ",\n".join("    {" + ", ".join(f"{float(v):.9e}f" if np.isfinite(v) else _special(v) for v in r) + "}"
                      for r in obs)  # fmt: skip
    entries = ", ".join(f'{{"{name}", {fn}}}' for name, fn in candidates.items())
    text = f"""/* Generated by metactl bench firmware. */
#include <math.h>
#include "policy.h"
#define BENCH_SAMPLES {len(obs)}u
#define BENCH_CALLS {calls}u
typedef void (*bench_policy_fn)(const float *obs, float *action);
{extra}static const float bench_obs[BENCH_SAMPLES][METACTL_OBS_DIM] = {{
{rows}
}};
#define BENCH_CANDIDATES {{ {entries} }}
"""
    with open(os.path.join(work, "bench_data.h"), "w") as f:
        f.write(text)


def _special(v: float) -> str:
    return "NAN" if np.isnan(v) else ("INFINITY" if v > 0 else "-INFINITY")


def _emlearn_source(policy: Policy) -> str | tuple[str]:
    """emlearn's C for the network's tanh layers, wrapped in the same normalizer and squash as ours; or a
    one-element tuple saying why emlearn cannot express it."""
    try:
        from emlearn.net import c_generate_net_loadable
    except ImportError:
        return ("emlearn is not installed (pip install emlearn)",)
    layers = policy.spec.effective_layers(np.asarray(policy.params, dtype=np.float64))
    if len(layers) < 2:
        return ("eml_net_infer requires at least 2 layers (a linear policy has 1)",)
    net = c_generate_net_loadable(["tanh"] * len(layers), [w for w, _ in layers], [b for _, b in layers], "eml_pol")
    norm, spec = policy.normalizer, policy.spec
    lit = lambda a: ", ".join(f"{float(np.float32(v)):.9e}f" for v in a)  # noqa: E731
    half = 0.5 * (np.asarray(spec.action_high) - np.asarray(spec.action_low))
    return f"""{net}
static const float mean[] = {{{lit(norm.mean)}}}, std_[] = {{{lit(norm.std)}}};
static const float low[] = {{{lit(spec.action_low)}}}, half[] = {{{lit(half)}}}, high[] = {{{lit(spec.action_high)}}};
void emlearn_policy(const float *obs, float *action)
{{
    float x[{spec.obs_dim}];
    for (int i = 0; i < {spec.obs_dim}; ++i) {{
        float v = (obs[i] - mean[i]) / std_[i];
        v = v < -10.0f ? -10.0f : v;
        x[i] = v > 10.0f ? 10.0f : v;
    }}
    eml_net_regress(&eml_pol, x, {spec.obs_dim}, action, {spec.act_dim});
    for (int i = 0; i < {spec.act_dim}; ++i) {{
        float a = (action[i] + 1.0f) * half[i] + low[i];
        a = a < low[i] ? low[i] : a;
        action[i] = a > high[i] ? high[i] : a;
    }}
}}
"""


def _qemu(elf: str, machine: str, uart_file: str) -> str:
    cmd = ["qemu-system-arm", "-M", machine, "-display", "none", "-monitor", "none", "-serial", f"file:{uart_file}",
           "-icount", "shift=0", "-semihosting-config", "enable=on,target=native", "-kernel", elf]  # fmt: skip
    with tempfile.TemporaryFile() as err:
        proc = subprocess.run(cmd, stderr=err, timeout=600)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{os.path.basename(elf)} failed in QEMU (exit {proc.returncode}): {err.read()[-500:]}")
    with open(uart_file) as f:
        return f.read()


def _parse(text: str) -> tuple[dict[str, int], dict[str, np.ndarray], int]:
    counts, outputs, stack = {}, {}, -1
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["time"]:
            counts[parts[1]] = int(parts[2], 16)
        elif parts[:1] == ["out"]:
            bits = np.array([int(p, 16) for p in parts[2:]], dtype=np.uint32)
            outputs.setdefault(parts[1], []).append(bits.view(np.float32))
        elif parts[:1] == ["stack"]:
            stack = int(parts[1], 16)
    if "end" not in text:
        raise RuntimeError(f"the benchmark did not finish: {text[-300:]!r}")
    return counts, {k: np.asarray(v) for k, v in outputs.items()}, stack


def _table(rows: list[dict[str, Any]]) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    headers = ("network", "params", "M4F flash/RAM B", "M4F instr", "us@168MHz", "max|C-ORT|",
               "newlib tanhf instr", "emlearn instr (max|err|)", "M3 soft flash/RAM B", "M3 soft instr",
               "M3 emlearn instr")  # fmt: skip

    def eml(row: dict[str, Any], t: str) -> str:
        if f"{t}_emlearn_instructions" in row:
            return f"{row[f'{t}_emlearn_instructions']:,.0f} ({row[f'{t}_emlearn_max_abs_diff_vs_ort']:.1e})"
        return "n/a: " + row.get(f"{t}_emlearn_not_expressible", ("?",))[0][:40]

    out = [(r["network"], r["params"], f"{r['m4_flash']:,}/{r['m4_ram']:,}", f"{r['m4_metactl_instructions']:,.0f}",
            f"{r['m4_metactl_us_at_168MHz']:.1f}", f"{r['m4_metactl_max_abs_diff_vs_ort']:.1e}",
            f"{r['m4_metactl_libm_instructions']:,.0f}", eml(r, "m4"), f"{r['m3_flash']:,}/{r['m3_ram']:,}",
            f"{r['m3_metactl_instructions']:,.0f}", eml(r, "m3")) for r in rows]  # fmt: skip
    return headers, out
