"""``metactl bench fuzz``: a million random, truncated, corrupted and oversized frames through the decoder."""

from __future__ import annotations

from typing import Any

from metactl.deploy.fuzz_codec import fuzz_codec
from metactl.report import format_table
from metactl.summary import write_summary


def bench_fuzz(out_dir: str, *, frames: int = 1_000_000, seed: int = 0) -> dict[str, Any]:
    """Run the codec fuzzer; print its counts and write them to ``out_dir/summary.json``."""
    result = fuzz_codec(frames, seed)
    write_summary(out_dir, result)
    rows = [(k, v) for k, v in result.items() if not isinstance(v, list | dict)]
    rows.append(("violations", len(result.get("violations", []))))
    print(format_table(f"metactl bench fuzz: {frames} frames", ("", "value"), rows))
    return result
