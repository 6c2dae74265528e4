"""Save and load a trained policy (architecture, parameters, normalizer, extra JSON) as one .npz."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from controllers.normalizer import NormalizerSnapshot
from controllers.policies import Policy, PolicySpec


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


def load_policy(path: str) -> tuple[Policy, dict[str, Any]]:
    with np.load(path) as f:
        spec = PolicySpec.from_dict(json.loads(str(f["spec"])))
        policy = Policy(spec, f["params"].copy(), NormalizerSnapshot(f["norm_mean"].copy(), f["norm_std"].copy()))
        return policy, json.loads(str(f["extra"]))
