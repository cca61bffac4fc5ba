"""κ task rows → metrics (geodite.metrics.phonons.kappa_metrics): MBD's rates, penalties and the published
per-material κ of CHGNet 0.3.0 (tests/data/kappa-103-analysis.jsonl.gz)."""

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geodite.metrics.phonons import SRME_PENALTY, compare_published, kappa_metrics, kappa_sre

KAPPA_FILE = Path(__file__).parents[1] / "data" / "kappa-103-analysis.jsonl.gz"


def test_failure_and_imaginary_mode_rates():
    df = pd.DataFrame({
        "key": list("abcde"), "status": ["ok", "ok", "ok", "ok", "failed"],
        "kappa_dft": [1.0, 2.0, 3.0, 0.0, 1.0], "kappa_pred": [1.1, np.nan, -0.5, 0.0, np.nan],
        "failed": [False, False, False, False, True], "imaginary_modes": [False, True, False, False, False],
        "broken_symmetry": [False] * 5, "has_mode_reference": [True] * 5,
        "srme": [0.1, np.nan, np.nan, 0.0, np.nan],
    })  # fmt: skip
    out = kappa_metrics(df, "full")
    # censored: b (imaginary), c (negative κ), e (failed); a and d (κ_DFT = 0, both 0) are scored
    assert out["failure_rate"] == 3 / 5
    assert out["imaginary_mode_rate"] == 1 / 5
    assert out["kappa_SRME"] == (0.1 + 3 * SRME_PENALTY + 0.0) / 5
    assert out["kappa_SRD"] == np.mean([2 * 0.1 / 2.1, -2, -2, 0.0, -2])
    assert out["spectrum_w1"] is None and "min_frequency" in out["spectrum_w1_reason"]


def test_censored_srme_is_a_failure_an_srme_of_2_is_not():
    """The issue's material: mode κ [11, −9] against DFT [1, 1] (totals equal) has SRME 2 because it is
    censored, and MBD counts it failed; κ_pred = 0 against κ_DFT = 1 also has SRME 2 but is scored, not failed."""
    from geodite.metrics.phonons import kappa_srme_censored

    srme, censored = kappa_srme_censored(np.array([[11.0, -9.0]]), np.array([[1.0, 1.0]]), [1.0], 2.0, 2.0,
                                         mode_kappa_is_scalar=True)  # fmt: skip
    zero, zero_censored = kappa_srme_censored(np.array([[0.0, 0.0]]), np.array([[0.5, 0.5]]), [1.0], 0.0, 1.0,
                                              mode_kappa_is_scalar=True)  # fmt: skip
    assert (srme, censored, zero, zero_censored) == (2.0, True, 2.0, False)
    df = pd.DataFrame({"status": "ok", "kappa_dft": [2.0, 1.0], "kappa_pred": [2.0, 0.0], "srme": [srme, zero],
                       "srme_censored": [censored, zero_censored], "has_mode_reference": True})  # fmt: skip
    out = kappa_metrics(df, "full")
    assert out["failure_rate"] == 0.5 and out["kappa_SRME"] == 2.0


def test_rows_without_dft_kappa_are_counted_not_scored():
    df = pd.DataFrame(
        {"key": ["mp-22862", "mp-1265"], "status": ["ok", "failed"], "kappa_dft": [7.2135, np.nan],
         "kappa_pred": [7.2135, np.nan]}
    )
    out = kappa_metrics(df, "offline")
    assert out["n_without_kappa_dft"] == 1 and out["kappa_SRE"] == 0.0 and out["n_failed"] == 1


def test_published_chgnet_rows():
    """CHGNet's published per-material κ as rows: 16 materials with imaginary modes get the penalty; mean SRE
    as computed directly (1.6959); κ_SRME null with the given reason; with the published per-material SRME
    as the rows' srme, κ_SRME is CHGNet's published 1.717."""
    with gzip.open(KAPPA_FILE, "rt") as fh:
        rows = [json.loads(line) for line in fh]
    base = rows[0]["_base"]
    row = next(r for r in rows[1:] if r["key"] == "chgnet-0.3.0")
    df = pd.DataFrame(
        {
            "key": base["material_ids"],
            "status": "ok",
            "kappa_dft": base["kappa_dft"],
            "kappa_pred": [np.nan if v is None else v for v in row["kappa_ml"]],
            "imaginary_modes": row["imag_modes"],
            "broken_symmetry": row["broken_sym"],
            "failed": False,
        }
    )
    out = kappa_metrics(df, "offline", reference_reason="no reference here")
    expected = float(np.mean(kappa_sre(df["kappa_pred"].to_numpy(float), df["kappa_dft"].to_numpy(float))))
    assert out["n_materials"] == 103 and out["n_imaginary_modes"] == 16 and out["n_kappa"] == 87
    assert out["kappa_SRE"] == pytest.approx(expected)
    assert out["kappa_SRE"] == pytest.approx(1.6959, abs=1e-4)
    assert out["kappa_SRME"] is None and out["kappa_SRME_reason"] == "no reference here"
    out = kappa_metrics(df.assign(srme=row["srme"]), "full")
    assert out["kappa_SRME"] == pytest.approx(1.717, abs=5e-4)


def test_compare_published_self_and_scaled():
    pub = pd.Series([1.0, 2.0, 10.0, np.nan, 5.0])
    same = compare_published(pub, pub)
    assert same == {"n_both": 4, "spearman": pytest.approx(1.0), "median_abs_log_ratio": 0.0, "n_within_20pct": 4}
    scaled = compare_published(pub * 1.5, pub)
    assert scaled["median_abs_log_ratio"] == pytest.approx(np.log(1.5))
    assert scaled["n_within_20pct"] == 0 and scaled["spearman"] == pytest.approx(1.0)


def test_published_comparison_in_the_metrics():
    """With compare_with: the published model's mean SRE on the same materials; penalised rows have no κ in
    the comparison (n_both counts only materials with both κ)."""
    df = pd.DataFrame({"status": "ok", "kappa_dft": [1.0, 2.0, 4.0], "kappa_pred": [1.0, 2.0, 4.0],
                       "imaginary_modes": [False, False, True], "kappa_published": [1.0, 3.0, 4.0]})  # fmt: skip
    out = kappa_metrics(df, "offline", compare_with="m")
    assert out["published_model"] == "m" and out["published_n_both"] == 2
    assert out["published_kappa_SRE_same_materials"] == pytest.approx((0 + 2 * 1 / 5 + 0) / 3)
    assert out["kappa_SRE"] == pytest.approx(2 / 3)
