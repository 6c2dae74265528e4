"""``export_c``: the generated C99 builds warning-free with the system gcc and, called through ctypes, equals the
bundle's onnxruntime graph within 1e-5 on recorded, random, huge and non-finite observations."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess

import numpy as np
import pytest
from firmware_helpers import OBS, gcc_shared, random_policy

from metactl.deploy import PolicyBundle
from metactl.deploy.c_export import export_c, params_crc, policy_id
from metactl.deploy.errors import BundleError
from metactl.deploy.export import build_model

F32P = ctypes.POINTER(ctypes.c_float)


class CPolicy:
    """The exported C as a shared library: ``act(obs [N, obs_dim]) -> [N, act_dim]`` and its parameter array."""

    def __init__(self, so: str, obs_dim: int, act_dim: int, num_params: int):
        self.lib = ctypes.CDLL(so)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.params = (ctypes.c_float * num_params).in_dll(self.lib, "metactl_params")

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        out = np.zeros((len(obs), self.act_dim), np.float32)
        for row, act in zip(obs, out, strict=True):
            self.lib.metactl_policy(row.ctypes.data_as(F32P), act.ctypes.data_as(F32P))
        return out


def _build(source, out_dir) -> tuple[dict, CPolicy]:
    info = export_c(source, str(out_dir / "c"))
    so = gcc_shared([info["source"]], str(out_dir / "policy.so"))  # -std=c99 -Wall -Wextra -Werror -pedantic
    return info, CPolicy(so, info["obs_dim"], info["act_dim"], info["param_count"])


def _observations(rng: np.random.Generator, recorded: np.ndarray) -> np.ndarray:
    """Recorded states, wide random ones, and rows with huge, infinite and NaN entries."""
    wide = rng.standard_normal((300, OBS)) * rng.choice([0.1, 1.0, 10.0, 1e3], (300, 1))
    special = rng.standard_normal((200, OBS))
    picks = rng.integers(0, OBS, (200, 3))
    values = rng.choice(np.array([np.inf, -np.inf, np.nan, 3.4e38, -3.4e38, 1e30, -1e30]), (200, 3))
    np.put_along_axis(special, picks, values, axis=1)
    return np.vstack([recorded, wide, special]).astype(np.float32)


def _recorded(bundle: PolicyBundle, steps: int = 200) -> np.ndarray:
    """Observations of a real MuJoCo HalfCheetah episode driven by the bundle's policy."""
    from metactl.deploy import SimRobot

    robot = SimRobot("halfcheetah_fb", 0)
    robot.reset(3)
    out = [robot.read_state().obs]
    for _ in range(steps):
        robot.write_command(bundle.act(out[-1]))
        out.append(robot.read_state().obs)
    return np.asarray(out)


def _assert_parity(got: np.ndarray, want: np.ndarray) -> None:
    assert np.array_equal(np.isnan(got), np.isnan(want))  # NaN observation -> NaN actions, in both
    finite = ~np.isnan(want)
    assert np.abs(got[finite] - want[finite]).max() <= 1e-5


def test_a_bundle_exported_to_c_equals_onnxruntime(hc_bundle: str, tmp_path) -> None:
    bundle = PolicyBundle.load(hc_bundle)
    info, c = _build(hc_bundle, tmp_path)
    obs = _observations(np.random.default_rng(0), _recorded(bundle))
    want = bundle.act(obs).astype(np.float32)
    _assert_parity(c.act(obs), want)
    assert np.isnan(want).any(axis=1).sum() > 50  # the NaN rows really were there
    assert info["policy_id"] == policy_id(bundle.meta.spec, bundle.meta.normalizer)


@pytest.mark.parametrize("hidden", [(32, 32), (64, 64)])
def test_mlps_equal_onnxruntime_on_wide_and_non_finite_inputs(hidden, tmp_path) -> None:
    import onnxruntime as ort

    policy = random_policy(hidden, seed=len(hidden) + hidden[0])
    _, c = _build(policy, tmp_path)
    session = ort.InferenceSession(build_model(policy).SerializeToString(), providers=["CPUExecutionProvider"])
    obs = _observations(np.random.default_rng(1), np.zeros((0, OBS)))
    (want,) = session.run(["action"], {"obs": obs})
    _assert_parity(c.act(obs), want)


@pytest.mark.parametrize(("hidden", "context"), [((16,), 2), ((), 3)])
def test_context_inputs_equal_onnxruntime_and_numpy_and_are_adaptable(hidden, context, tmp_path) -> None:
    """A policy with context inputs: the C folds z W_context into the first bias as the graph does; new context
    values written into the parameters move the actions in both, alike."""
    import onnxruntime as ort

    policy = random_policy(hidden, seed=7, context=context)
    info, c = _build(policy, tmp_path)
    session = ort.InferenceSession(build_model(policy).SerializeToString(), providers=["CPUExecutionProvider"])
    obs = _observations(np.random.default_rng(4), np.zeros((0, OBS)))
    (want,) = session.run(["action"], {"obs": obs})
    _assert_parity(c.act(obs), want)
    finite = ~np.isnan(obs).any(axis=1)
    np.testing.assert_allclose(policy.act_batch(obs[finite].astype(np.float64)), want[finite], atol=1e-5)
    new = np.asarray(policy.params, np.float32).copy()
    new[slice(*policy.spec.context_span())] += 2.0
    ctypes.memmove(c.params, new.ctypes.data, 4 * new.size)
    (moved,) = session.run(["action"], {"obs": obs, "params": new})
    assert np.abs(moved[finite] - want[finite]).max() > 0.1  # the context really drives the actions
    _assert_parity(c.act(obs), moved)
    assert info["policy_id"] != policy_id(random_policy(hidden, seed=7).spec, policy.normalizer)


def test_parameters_are_overwritable_without_recompiling(hc_bundle: str, tmp_path) -> None:
    bundle = PolicyBundle.load(hc_bundle)
    _, c = _build(hc_bundle, tmp_path)
    assert np.array_equal(np.asarray(c.params, np.float32), bundle.params.astype(np.float32))
    new = np.random.default_rng(2).standard_normal(bundle.num_params) * 0.5
    ctypes.memmove(c.params, new.astype(np.float32).ctypes.data, 4 * new.size)
    obs = np.random.default_rng(3).standard_normal((100, OBS)).astype(np.float32)
    _assert_parity(c.act(obs), bundle.act(obs, params=new).astype(np.float32))


def test_the_api_and_includes_are_exactly_as_specified(tmp_path) -> None:
    policy = random_policy((8,))
    info = export_c(policy, str(tmp_path / "c"))
    header, source = (open(info[k]).read() for k in ("header", "source"))
    assert "void metactl_policy(const float *obs, float *action);" in header
    for name, value in (("OBS_DIM", 17), ("ACT_DIM", 6), ("PARAM_COUNT", policy.spec.num_params)):
        assert re.search(rf"#define METACTL_{name} {value}\b", header)
    assert f"#define METACTL_PARAMS_CRC 0x{params_crc(policy.params):08x}u" in header
    includes = set(re.findall(r"#include\s+([<\"][^>\"]+[>\"])", header + source))
    assert includes == {"<stdint.h>", "<math.h>", '"policy.h"'}
    assert not re.search(r"\b(malloc|calloc|realloc|free)\b", source)
    assert f"float metactl_params[{policy.spec.num_params}] =" in source  # one writable array
    # A C99 consumer sees only the documented API.
    main = tmp_path / "main.c"
    main.write_text(
        '#include "policy.h"\nint main(void) { float o[METACTL_OBS_DIM] = {0}, a[METACTL_ACT_DIM];\n'
        "metactl_params[0] = 1.0f; metactl_policy(o, a); return a[0] > 2.0f; }\n"
    )
    cmd = ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{tmp_path / 'c'}"]
    subprocess.run([*cmd, "-o", str(tmp_path / "main"), str(main), info["source"], "-lm"], check=True)
    assert subprocess.run([str(tmp_path / "main")]).returncode == 0


def test_export_never_writes_over_other_outputs(tmp_path) -> None:
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(BundleError, match="holds other files"):
        export_c(random_policy(()), str(tmp_path))
    again = tmp_path / "c"
    export_c(random_policy(()), str(again))
    export_c(random_policy((), seed=1), str(again))  # an earlier C export is replaced
    assert sorted(os.listdir(again)) == ["policy.c", "policy.h"]
