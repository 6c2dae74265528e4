"""Peak memory of one meta-gradient, measured in a fresh process: ``python -m metactl.bench.meta_memory '<json>'``.

torch's CPU allocations are invisible to ``tracemalloc``, so the probe reads the kernel's resident high-water
mark: before each measurement it resets it to the current resident size (``5`` into /proc/self/clear_refs) and
reports the peak (``VmHWM``) minus that size. ``ru_maxrss`` cannot be reset and, after fork + exec, starts at the
parent's resident size: a probe started by a 500 MB benchmark process saw no growth at all. A warm-up
meta-gradient on a one-task, one-point batch first pays torch's lazy initialization (without the reset, its
transient peak hid every smaller meta-step); freed heap memory is returned to the system first (``malloc_trim``),
so each measurement sees its whole peak. Where /proc is unavailable, the growth of ``ru_maxrss``.
The problem is an MLP regression of random data of the benchmark's shapes (a dynamics model's loss is one:
normalized [obs, act] -> normalized delta), so memory depends only on sizes, not on the data.

Input JSON: ``{"sizes": [in, hidden..., out], "tasks": B, "support": M, "query": K, "settings": [{...}, ...]}``
(each settings dict a ``MetaSettings``); output: one number per settings, its peak resident memory above the
resident size before it ran [MB].
"""

from __future__ import annotations

import ctypes
import json
import resource
import subprocess
import sys
from typing import Any


def _status_mb(key: str) -> float | None:
    """``VmHWM`` / ``VmRSS`` of /proc/self/status [MB], None where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def _start() -> float:
    """Return freed heap memory to the system (glibc keeps it resident, and a later meta-step reusing it would not
    show), reset the high-water mark to the current resident size and return that size [MB]."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        rss = _status_mb("VmRSS")
        if rss is not None:
            return rss
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak() -> float:
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    out = []
    for settings in all_settings:
        before = _start()
        run(settings, (x[:, :m], y[:, :m]), (x[:, m:], y[:, m:]))
        out.append(_peak() - before)
    return out


def peak_growth_mb(spec: dict[str, Any]) -> list[float]:
    """``probe(spec)`` in a fresh Python process (see the module docstring)."""
    cmd = [sys.executable, "-m", "metactl.bench.meta_memory", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [float(v) for v in json.loads(out.stdout)]


if __name__ == "__main__":
    print(json.dumps(probe(json.loads(sys.argv[1]))))
