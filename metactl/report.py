"""Plain-text summary tables, printed at the end of every command."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A boxed, column-aligned table; floats get 2 decimals."""
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    out = [title, line, "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)) + " |", line]
    out += ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    out.append(line)
    return "\n".join(out)


def mean_se(mean: float, se: float, n: int, signed: bool = False) -> str:
    """A mean over ``n`` seeds: "-" with none, the mean alone with one (no standard error), else "mean ± se";
    ``signed``: with its sign (a difference)."""
    if n == 0:
        return "-"
    value = f"{mean:+.1f}" if signed else f"{mean:.1f}"
    return value if n == 1 or se != se else f"{value} ± {se:.1f}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)
