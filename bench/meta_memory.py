"""Peak memory of one meta-gradient, measured in a fresh process: ``python -m metactl.bench.meta_memory '<json>'``.

torch's CPU allocations are invisible to ``tracemalloc``, so the probe reads the process's resident high-water
mark before and after: ``VmHWM`` of /proc/self/status, the peak of this process image alone (``ru_maxrss`` is
not: after fork + exec it starts at the parent's resident size, so a probe started by a 500 MB benchmark
process saw no growth at all). A fresh interpreter per measurement keeps one estimator's peak from hiding
another's; a warm-up meta-gradient on a one-task, one-point batch first pays torch's lazy initialization.
The problem is an MLP regression of random data of the benchmark's shapes (a dynamics model's loss is one:
normalized [obs, act] -> normalized delta), so memory depends only on sizes, not on the data.

Input JSON: ``{"sizes": [in, hidden..., out], "tasks": B, "support": M, "query": K, "settings": [{...}, ...]}``
(each settings dict a ``MetaSettings``); output: one number per settings, the growth of the high-water mark in
MB after it ran (so a later number exceeds an earlier one only if it needed more memory).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from typing import Any


def _peak_mb() -> float:
    """Peak resident memory of this process image [MB] (Linux: VmHWM; elsewhere ru_maxrss, see the docstring)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB, macOS bytes


def probe(spec: dict[str, Any]) -> list[float]:
    """Run the measurement in this process (call it in a fresh one: see ``peak_growth_mb``)."""
    import torch

    from metactl.train import dynamics_model as dm
    from metactl.train.meta_learners import init_inner, make_meta_learner
    from metactl.train.meta_settings import MetaSettings

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    sizes, tasks, m, k = spec["sizes"], spec["tasks"], spec["support"], spec["query"]
    theta = dm.init_mlp(sizes, g)
    x = torch.randn(tasks, m + k, sizes[0], generator=g)
    y = torch.randn(tasks, m + k, sizes[-1], generator=g)

    def loss(p: dm.Params, data: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return ((dm.mlp(p, data[0]) - data[1]) ** 2).mean()

    def run(settings: MetaSettings, s: tuple, q: tuple) -> None:
        phi = init_inner(settings, theta, torch.Generator().manual_seed(1))
        make_meta_learner(settings, loss).meta_grad(theta, phi, s, q, torch.Generator().manual_seed(2))

    all_settings = [MetaSettings(**s) for s in spec["settings"]]
    run(all_settings[0], (x[:1, :1], y[:1, :1]), (x[:1, m : m + 1], y[:1, m : m + 1]))
    before, out = _peak_mb(), []
    for settings in all_settings:
        run(settings, (x[:, :m], y[:, :m]), (x[:, m:], y[:, m:]))
        out.append(_peak_mb() - before)
    return out


def peak_growth_mb(spec: dict[str, Any]) -> list[float]:
    """``probe(spec)`` in a fresh Python process (see the module docstring)."""
    cmd = [sys.executable, "-m", "metactl.bench.meta_memory", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [float(v) for v in json.loads(out.stdout)]


if __name__ == "__main__":
    print(json.dumps(probe(json.loads(sys.argv[1]))))
