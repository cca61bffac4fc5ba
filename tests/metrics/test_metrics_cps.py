"""Tests for geodite.metrics.cps."""

import math

import pytest

from geodite.metrics.cps import combined_performance_score, cps_or_reason, cps_result


@pytest.mark.parametrize(
    ("f1", "kappa_srme", "rmsd", "expected"),
    [
        (0.771, 0.499, 0.086, 0.728),  # Geodite-MP (docs/benchmarks.md)
        (0.669, 0.682, 0.0915, 0.637),  # MACE-MP-0 with current κ_SRME
        (0.669, 0.647, 0.0915, 0.644),  # MACE-MP-0 published with older κ_SRME 0.647
    ],
)
def test_published_cps(f1, kappa_srme, rmsd, expected):
    assert round(combined_performance_score(f1, kappa_srme, rmsd), 3) == expected


def test_cps_formula_edges():
    assert combined_performance_score(1.0, 0.0, 0.0) == pytest.approx(1.0)
    assert combined_performance_score(0.0, 2.0, 0.3) == pytest.approx(0.0)  # RMSD term clamped
    assert combined_performance_score(0.5, 1.0, 0.075) == pytest.approx(0.25 + 0.2 + 0.05)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((None, 0.5, 0.08), "F1 is missing"),
        ((0.7, math.nan, 0.08), "kappa_SRME is NaN"),
        ((0.7, 0.5, None), "RMSD is missing"),
        ((1.2, 0.5, 0.08), "F1=1.2 outside"),
        ((0.7, 2.5, 0.08), "kappa_SRME=2.5 outside"),
        ((0.7, 0.5, -0.01), "RMSD=-0.01 outside"),
    ],
)
def test_cps_missing_or_out_of_range(args, fragment):
    assert combined_performance_score(*args) is None
    value, reason = cps_or_reason(*args)
    assert value is None and fragment in reason
    result = cps_result(*args)
    assert result.value is None and fragment in result.reason


def test_cps_result_success():
    result = cps_result(0.771, 0.499, 0.086)
    assert result.reason is None and round(result.value, 3) == 0.728
