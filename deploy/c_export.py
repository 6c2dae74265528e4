"""Export a policy as self-contained C99 (``policy.h`` / ``policy.c``) for a microcontroller.

The C computes exactly what the ONNX graph of ``deploy.export`` computes, in float32::

    obs -> (obs - mean) / std -> clip(+-CLIP) -> per layer tanh(x W + b) -> low + 0.5 (x + 1)(high - low)
        -> clip to [low, high]

with the API ``void metactl_policy(const float *obs, float *action);``. All parameters live in one
``float metactl_params[METACTL_PARAM_COUNT]`` in ``PolicySpec.unflatten`` order (per layer: W [in][out]
row-major, then b [out]), the very vector the host's adaptation operator proposes, so firmware can
overwrite it with new parameters without recompiling. No heap, no recursion, only ``<math.h>`` and
``<stdint.h>``; the caller owns the observation and action buffers (as emlearn's ``eml_net``).

Matching onnxruntime, not libm: tanh is the rational approximation onnxruntime's MLAS uses (Eigen's
coefficients, clamp to +-9, p/q with fused multiply-adds): with an FMA unit (Cortex-M4F, x86 FMA3) it
is bit-identical to onnxruntime's Tanh, and it costs ~20 instructions where newlib's ``tanhf`` costs
~110. Dot products accumulate in input order, fused where the FPU fuses (``FP_FAST_FMAF``). Every clamp
is a comparison, so a NaN observation gives NaN actions as in the graph (``fminf``/``fmaxf`` would drop
it), and +-inf or huge observations are clipped by the normalizer like everywhere else.

``policy_id`` is the CRC-32 of everything but the parameters (sizes, normalizer, bounds): the firmware
reports it in its handshake and the host refuses to upload parameters into a policy of another shape.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from metactl.controllers import NormalizerSnapshot, Policy, PolicySpec, load_policy
from metactl.controllers.normalizer import CLIP
from metactl.controllers.serialization import POLICY_FILE, run_file
from metactl.deploy import metadata as md
from metactl.deploy.errors import BundleError

HEADER, SOURCE = "policy.h", "policy.c"
C_FILES = (HEADER, SOURCE)
TANH_CLAMP = 9.0
"""MLAS clamps tanh's input to +-9 (tanh(9) rounds to 1 in float32)."""
TANH_NUM = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
            1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)  # fmt: skip
"""Odd numerator of tanh(x) ~ x p(x^2) / q(x^2), highest power first (Eigen / onnxruntime MLAS)."""
BLOCK = 8
"""Outputs computed together, their sums held in FPU registers while the inputs stream past once."""
TANH_DEN = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)
"""Even denominator q(x^2), highest power first."""


@dataclass(frozen=True)
class CPolicy:
    """What the C is generated from: architecture, normalizer and the parameter vector (float32 on export)."""

    spec: PolicySpec
    normalizer: NormalizerSnapshot
    params: np.ndarray

    @property
    def policy_id(self) -> int:
        return policy_id(self.spec, self.normalizer)


def policy_id(spec: PolicySpec, normalizer: NormalizerSnapshot) -> int:
    """CRC-32 of the policy's structure as float32/u16 little-endian: layer sizes (and context), normalizer mean,
    std and clip, action low and high. Two policies with equal ids accept each other's parameter vectors."""
    f32 = lambda v: np.asarray(v, dtype="<f4").tobytes()  # noqa: E731
    sizes = struct.pack(f"<{len(spec.layer_sizes) + 1}H", len(spec.layer_sizes), *spec.layer_sizes)
    if spec.context:  # only then, so the ids of context-free policies stay what they were
        sizes += struct.pack("<2H", 0xC7, spec.context)
    blob = b"metactl-policy/1" + sizes + f32(normalizer.mean) + f32(normalizer.std) + f32([CLIP])
    return zlib.crc32(blob + f32(spec.action_low) + f32(spec.action_high))


def params_crc(params: np.ndarray) -> int:
    """CRC-32 of a parameter vector as the firmware holds it (float32 little-endian): what PARAMS commits check."""
    return zlib.crc32(np.asarray(params, dtype="<f4").tobytes())


def load_c_policy(source: str | Policy | CPolicy) -> CPolicy:
    """The policy of ``source``: a ``Policy``, a ``policy.npz``, a training run folder holding one, or a bundle."""
    if isinstance(source, CPolicy):
        return source
    if isinstance(source, Policy):
        return CPolicy(source.spec, source.normalizer, np.asarray(source.params, dtype=np.float64))
    path = os.fspath(source)
    if os.path.isfile(os.path.join(path, md.METADATA_FILE)):
        from metactl.deploy.policy_bundle import PolicyBundle

        meta = md.parse_metadata(md.read_metadata_json(path), path)
        if not isinstance(meta, md.PolicyMetadata):
            raise BundleError(f"bundle {path} holds a {meta.kind}; only policy bundles export to C")
        bundle = PolicyBundle.load(path, meta)
        return CPolicy(meta.spec, meta.normalizer, np.asarray(bundle.params, dtype=np.float64))
    npz = run_file(path, POLICY_FILE)
    if not os.path.isfile(npz):
        raise BundleError(f"no policy at {path}: pass a bundle folder, a 'metactl train' output or its policy.npz")
    policy, _ = load_policy(npz)
    return CPolicy(policy.spec, policy.normalizer, np.asarray(policy.params, dtype=np.float64))


def export_c(source: str | Policy | CPolicy, out_dir: str) -> dict[str, str | int]:
    """Write ``policy.h`` and ``policy.c`` for ``source`` (see ``load_c_policy``) into ``out_dir``.

    ``out_dir`` must be new, empty, or hold only an earlier C export (never another output). Returns the paths
    and the sizes: ``{"header", "source", "obs_dim", "act_dim", "param_count", "policy_id"}``."""
    policy = load_c_policy(source)
    arrays = (policy.params, policy.normalizer.mean, policy.normalizer.std)
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise BundleError(f"{source}: non-finite parameters or normalizer; such a policy cannot be deployed")
    _prepare(out_dir)
    header, body = render(policy)
    paths = {HEADER: os.path.join(out_dir, HEADER), SOURCE: os.path.join(out_dir, SOURCE)}
    for name, text in ((HEADER, header), (SOURCE, body)):
        with open(paths[name] + ".tmp", "w") as f:
            f.write(text)
        os.replace(paths[name] + ".tmp", paths[name])
    spec = policy.spec
    return {"header": paths[HEADER], "source": paths[SOURCE], "obs_dim": spec.obs_dim, "act_dim": spec.act_dim,
            "param_count": spec.num_params, "policy_id": policy.policy_id}  # fmt: skip


def _prepare(out_dir: str) -> None:
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise BundleError(f"--out {out_dir} is a file, not a folder; choose a folder for policy.h and policy.c")
    os.makedirs(out_dir, exist_ok=True)
    others = sorted(set(os.listdir(out_dir)) - {*C_FILES, "summary.json"})
    if "summary.json" in os.listdir(out_dir) and not _is_c_export_summary(os.path.join(out_dir, "summary.json")):
        others.insert(0, "summary.json")  # another command's output (a training run, a bundle export, ...)
    if others:
        raise BundleError(f"--out {out_dir} holds other files ({', '.join(others[:3])}); choose an empty folder")


def _is_c_export_summary(path: str) -> bool:
    """Whether ``path`` is the summary ``metactl export --target c`` wrote next to an earlier C export."""
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and summary.get("target") == "c"


def _f(v: float) -> str:
    """A float32 literal that reads back bit-exactly (9 significant digits)."""
    return f"{float(np.float32(v)):.9e}f"


def _array(name: str, values: np.ndarray, qualifiers: str = "static const ") -> str:
    vals = [_f(v) for v in np.asarray(values, dtype=np.float32)]
    rows = [", ".join(vals[i : i + 6]) for i in range(0, len(vals), 6)]
    return f"{qualifiers}float {name}[{len(vals)}] = {{\n    " + ",\n    ".join(rows) + "\n};\n"


def render(policy: CPolicy) -> tuple[str, str]:
    """The text of ``policy.h`` and ``policy.c``."""
    spec, norm = policy.spec, policy.normalizer
    sizes = spec.layer_sizes
    try:
        version = importlib.metadata.version("metactl")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    arch = " -> ".join(map(str, sizes)) + (f" with {spec.context} context inputs" if spec.context else "")
    context = f", then the {spec.context} context values" if spec.context else ""
    header = f"""/* Generated by metactl {version}: a {spec.kind} policy {arch}; do not edit, re-export instead.
 *
 * metactl_policy(obs, action): normalizer, tanh layers and action clipping, float32, no heap; not reentrant
 * (its two activation buffers are static), so one caller at a time.
 * metactl_params holds every weight and bias in PolicySpec.unflatten order (per layer W[in][out], then
 * b[out]){context}; overwrite it between two calls to run other parameters (a PARAMS upload).
 */
#ifndef METACTL_POLICY_H
#define METACTL_POLICY_H

#include <stdint.h>

#define METACTL_OBS_DIM {spec.obs_dim}
#define METACTL_ACT_DIM {spec.act_dim}
#define METACTL_PARAM_COUNT {spec.num_params}
#define METACTL_MAX_WIDTH {max(sizes)}
#define METACTL_POLICY_ID 0x{policy.policy_id:08x}u /* CRC-32 of sizes, normalizer and bounds */
#define METACTL_PARAMS_CRC 0x{params_crc(policy.params):08x}u /* CRC-32 of the exported parameters */

extern float metactl_params[METACTL_PARAM_COUNT];

void metactl_policy(const float *obs, float *action);

#endif /* METACTL_POLICY_H */
"""
    half_range = (0.5 * (np.asarray(spec.action_high) - np.asarray(spec.action_low))).astype(np.float32)
    layers, widths = [], set()
    if spec.context:  # b0 + z W_context into metactl_bias0, as the graph's b0_context (fused in input order)
        (_, h, w_at, b_at, _), (z_at, _) = spec.layout[0], spec.context_span()
        layers.append(f"""    /* the first layer's biases with the {spec.context} context values folded in */
    for (i = 0; i < {h}; ++i) {{
        float a = 0.0f;
        int c;
        for (c = 0; c < {spec.context}; ++c) {{
            a = METACTL_MADD(metactl_params[{z_at} + c], metactl_params[{w_at + spec.obs_dim * h} + c * {h} + i], a);
        }}
        metactl_bias0[i] = metactl_params[{b_at} + i] + a;
    }}""")
    for layer, (n_in, n_out, k, bias_at, _) in enumerate(spec.layout):
        bias = f"metactl_params + {bias_at}"
        if layer == 0 and spec.context:
            n_in, bias = spec.obs_dim, "metactl_bias0"
        layers.append(f"    /* {n_in} -> {n_out} */")
        full, rest = divmod(n_out, BLOCK)
        if full:
            widths.add(BLOCK)
            layers.append(f"    for (int j = 0; j < {full * BLOCK}; j += {BLOCK}) {{")
            layers.append(f"        metactl_block{BLOCK}(x, {n_in}, metactl_params + {k} + j, {n_out}, "
                          f"{bias} + j, y + j);\n    }}")  # fmt: skip
        if rest:
            widths.add(rest)
            j = full * BLOCK
            layers.append(f"    metactl_block{rest}(x, {n_in}, metactl_params + {k + j}, {n_out}, "
                          f"{bias} + {j}, y + {j});")  # fmt: skip
        layers.append("    t = x;\n    x = y;\n    y = t;")
    bias0 = f"static float metactl_bias0[{spec.layout[0][1]}];\n" if spec.context else ""
    body = _SOURCE.format(
        mean=_array("metactl_mean", norm.mean),
        std=_array("metactl_std", norm.std),
        low=_array("metactl_low", spec.action_low),
        half=_array("metactl_half_range", half_range),
        high=_array("metactl_high", spec.action_high),
        params=_array("metactl_params", policy.params, ""),
        clip=_f(CLIP),
        clamp=_f(TANH_CLAMP),
        num=", ".join(map(_f, TANH_NUM)),
        den=", ".join(map(_f, TANH_DEN)),
        blocks="\n".join(_block(w) for w in sorted(widths)),
        layers="\n".join(layers),
        bias0=bias0,
    )
    return header, body


def _block(width: int) -> str:
    """C of ``metactl_block<width>``: ``width`` outputs of a tanh layer, one accumulator each."""
    acc = [f"a{j}" for j in range(width)]
    madd = "\n".join(f"        {a} = METACTL_MADD(xi, w[{j}], {a});" for j, a in enumerate(acc))
    out = "\n".join(f"    y[{j}] = metactl_tanh({a} + b[{j}]);" for j, a in enumerate(acc))
    return f"""/* y[j] = tanh(b[j] + sum_i x[i] w[i][j]), j < {width}; rows of w n_out apart; sums in input order */
static void metactl_block{width}(const float *x, int n_in, const float *w, int n_out, const float *b, float *y)
{{
    float {", ".join(f"{a} = 0.0f" for a in acc)};
    int i;
    for (i = 0; i < n_in; ++i, w += n_out) {{
        const float xi = x[i];
{madd}
    }}
{out}
}}
"""


_SOURCE = """/* Generated by metactl: see policy.h. */
#include "policy.h"

#include <math.h>

/* a * b + c, fused where the FPU fuses (as onnxruntime's kernels do on FMA hardware). */
#if defined(FP_FAST_FMAF) || defined(__FP_FAST_FMAF)
#define METACTL_MADD(a, b, c) fmaf((a), (b), (c))
#else
#define METACTL_MADD(a, b, c) ((a) * (b) + (c))
#endif

{params}
{mean}
{std}
{low}
{half}
{high}
#ifdef METACTL_LIBM_TANH /* newlib's tanhf instead: only to measure what the approximation saves */
static float metactl_tanh(float x)
{{
    return tanhf(x);
}}
#else
static const float metactl_tanh_p[7] = {{ {num} }};
static const float metactl_tanh_q[4] = {{ {den} }};

/* tanh as onnxruntime computes it: clamp to +-9 (comparisons keep NaN), then x p(x^2) / q(x^2). */
static float metactl_tanh(float x)
{{
    const float *p = metactl_tanh_p;
    const float *q = metactl_tanh_q;
    float v = x < -{clamp} ? -{clamp} : x;
    v = v > {clamp} ? {clamp} : v;
    {{
        const float v2 = v * v;
        float num = METACTL_MADD(v2, p[0], p[1]);
        float den = METACTL_MADD(v2, q[0], q[1]);
        num = METACTL_MADD(num, v2, p[2]);
        num = METACTL_MADD(num, v2, p[3]);
        num = METACTL_MADD(num, v2, p[4]);
        num = METACTL_MADD(num, v2, p[5]);
        num = METACTL_MADD(num, v2, p[6]);
        den = METACTL_MADD(den, v2, q[2]);
        den = METACTL_MADD(den, v2, q[3]);
        return (num * v) / den;
    }}
}}
#endif

{blocks}
/* The activations of two consecutive layers. Static, so the stack use does not grow with the network (the
 * RAM shows in .bss); it makes metactl_policy non-reentrant: one caller at a time. */
static float metactl_buf_a[METACTL_MAX_WIDTH], metactl_buf_b[METACTL_MAX_WIDTH];
{bias0}
void metactl_policy(const float *obs, float *action)
{{
    float *buf_a = metactl_buf_a, *buf_b = metactl_buf_b;
    float *x = buf_a, *y = buf_b, *t;
    int i;
    for (i = 0; i < METACTL_OBS_DIM; ++i) {{
        float v = (obs[i] - metactl_mean[i]) / metactl_std[i];
        v = v < -{clip} ? -{clip} : v;
        x[i] = v > {clip} ? {clip} : v;
    }}
{layers}
    for (i = 0; i < METACTL_ACT_DIM; ++i) {{
        float a = (x[i] + 1.0f) * metactl_half_range[i] + metactl_low[i];
        a = a < metactl_low[i] ? metactl_low[i] : a;
        action[i] = a > metactl_high[i] ? metactl_high[i] : a;
    }}
}}
"""
