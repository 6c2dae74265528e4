"""Save and load a trained policy or dynamics model (architecture, parameters, normalization, JSON) as one .npz."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from metactl.controllers.dynamics import DynamicsError, DynamicsSpec, DynamicsStats
from metactl.controllers.normalizer import NormalizerSnapshot
from metactl.controllers.policies import Policy, PolicyError, PolicySpec

POLICY_FILE = "policy.npz"
"""What ``metactl train es`` writes into its output folder."""
MODEL_FILE = "model.npz"
"""What ``metactl train grbal|rebal|mb`` writes into its output folder."""


def run_file(run: str, name: str) -> str:
    """The path of a run's ``name`` file (``POLICY_FILE``, ``MODEL_FILE``): inside ``run`` if it is a folder, else
    ``run`` itself (a file given directly). Whether it exists is the caller's check: its error names the fix."""
    return os.path.join(run, name) if os.path.isdir(run) else run


def save_policy(path: str, policy: Policy, extra: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a truncated file behind."""
    tmp = f"{path}.tmp.npz"
    np.savez(
        tmp,
        params=policy.params,
        norm_mean=policy.normalizer.mean,
        norm_std=policy.normalizer.std,
        spec=json.dumps(policy.spec.to_dict()),
        extra=json.dumps(extra),
    )
    os.replace(tmp, path)


_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile)


def load_policy(path: str) -> tuple[Policy, dict[str, Any]]:
    """Inverse of ``save_policy``; ``PolicyError`` naming the file if it is not a readable policy."""
    try:
        with np.load(path, allow_pickle=False) as f:
            spec = PolicySpec.from_dict(json.loads(str(f["spec"])))
            policy = Policy(spec, f["params"].copy(), NormalizerSnapshot(f["norm_mean"].copy(), f["norm_std"].copy()))
            return policy, json.loads(str(f["extra"]))
    except PolicyError:
        raise
    except _READ_ERRORS as e:
        raise PolicyError(f"{path} is not a readable policy file ({type(e).__name__}: {str(e)[:80]}); "
                          "pass the policy.npz a 'metactl train es' run wrote") from None  # fmt: skip


def save_dynamics_model(
    path: str,
    spec: DynamicsSpec,
    params: list[np.ndarray],
    stats: DynamicsStats,
    extra: dict[str, Any],
    inner: Sequence[np.ndarray] = (),
) -> None:
    """A trained dynamics model as one .npz: spec and stats as JSON, parameters in ``param_shapes`` order (atomic);
    ``inner``: the learned parameters of its adaptation step (Meta-SGD's rates, the LSTM optimizer), if any."""
    spec.check_params(params)
    tmp = f"{path}.tmp.npz"
    arrays = {f"param_{i:03d}": np.asarray(p, dtype=np.float32) for i, p in enumerate(params)}
    arrays |= {f"inner_{i:03d}": np.asarray(p, dtype=np.float32) for i, p in enumerate(inner)}
    np.savez(tmp, spec=json.dumps(spec.to_dict()), stats=json.dumps(stats.to_dict()), extra=json.dumps(extra), **arrays)
    os.replace(tmp, path)


def load_dynamics_model(path: str) -> tuple[DynamicsSpec, list[np.ndarray], DynamicsStats, dict[str, Any]]:
    """Inverse of ``save_dynamics_model``; raises ``DynamicsError`` if the file is not one."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if "spec" not in f or "stats" not in f:
                raise DynamicsError(
                    f"{path} is not a dynamics model file (no spec/stats); train one with `metactl train`"
                )
            spec = DynamicsSpec.from_dict(json.loads(str(f["spec"])))
            params = [f[k].copy() for k in sorted(k for k in f.files if k.startswith("param_"))]
            stats = DynamicsStats.from_dict(json.loads(str(f["stats"])))
            extra = json.loads(str(f["extra"]))
    except DynamicsError:
        raise
    except _READ_ERRORS as e:
        raise DynamicsError(f"{path} is not a readable model file ({type(e).__name__}: {str(e)[:80]}); "
                            "pass the model.npz a 'metactl train grbal|rebal|mb' run wrote") from None  # fmt: skip
    spec.check_params(params)
    return spec, params, stats, extra


def load_inner_params(path: str) -> list[np.ndarray]:
    """The learned parameters of a dynamics model's adaptation step ([] for plain SGD and older files)."""
    with np.load(path) as f:
        return [f[k].copy() for k in sorted(k for k in f.files if k.startswith("inner_"))]
