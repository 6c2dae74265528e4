"""The summary tables' cells."""

from __future__ import annotations

from metactl.report import format_table, mean_se


def test_a_mean_over_seeds_shows_its_standard_error_only_when_it_has_one() -> None:
    assert mean_se(12.345, 1.25, 5) == "12.3 ± 1.2"
    assert mean_se(12.345, float("nan"), 1) == "12.3"  # one seed: no "± nan"
    assert mean_se(float("nan"), float("nan"), 0) == "-"
    assert mean_se(3.0, 0.5, 4, signed=True) == "+3.0 ± 0.5" and mean_se(-3.0, float("nan"), 1, signed=True) == "-3.0"
    table = format_table("t", ("method", "return"), [("ReBAL", mean_se(416.9, float("nan"), 1))])
    assert "416.9 |" in table and "nan" not in table
