"""Tests for geodite.metrics.discovery."""

import numpy as np
import pandas as pd
import pytest

from geodite.metrics.discovery import (
    METRIC_KEYS,
    classify_stable,
    full_metrics_from_rows,
    metrics_from_counts,
    most_stable_k,
    offline_metrics_from_rows,
    predicted_hull_distance,
    regression_metrics,
    stable_metrics,
    discovery_metrics_by_subset,
)

# CHGNet 0.3.0, unique prototypes, published in Matbench Discovery
# (models/chgnet/chgnet-0.3.0.yml): TP 25313, FP 23955, TN 158159, FN 8061
CHGNET_COUNTS = dict(tp=25313, fp=23955, tn=158159, fn=8061)
UNIQUE_PROTO_PREVALENCE = 32_942 / 215_488


def test_chgnet_published_unique_prototype_metrics():
    m = metrics_from_counts(**CHGNET_COUNTS, prevalence=UNIQUE_PROTO_PREVALENCE)
    assert round(m["F1"], 3) == 0.613
    assert round(m["Precision"], 3) == 0.514
    assert round(m["Accuracy"], 3) == 0.851
    assert round(m["DAF"], 3) == 3.361
    # further published values in the same YAML
    assert round(m["Recall"], 3) == 0.758
    assert round(m["TPR"], 3) == 0.758
    assert round(m["FPR"], 3) == 0.132
    assert round(m["TNR"], 3) == 0.868
    assert round(m["FNR"], 3) == 0.242
    assert m["TP"] + m["FP"] + m["TN"] + m["FN"] == 215_488


def test_metrics_from_counts_default_prevalence():
    m = metrics_from_counts(tp=2, fp=1, tn=6, fn=1)
    assert m["Precision"] == pytest.approx(2 / 3)
    assert m["Recall"] == pytest.approx(2 / 3)
    assert m["F1"] == pytest.approx(2 / 3)
    assert m["Accuracy"] == pytest.approx(0.8)
    assert m["DAF"] == pytest.approx((2 / 3) / 0.3)
    assert np.isnan(metrics_from_counts(0, 0, 5, 0)["Precision"])
    with pytest.raises(ValueError):
        metrics_from_counts(-1, 0, 0, 0)


@pytest.fixture
def small_df() -> pd.DataFrame:
    # stable ⇔ hull distance <= 0; NaN prediction = predicted unstable
    return pd.DataFrame(
        {
            "true": [-0.10, -0.02, 0.00, 0.05, 0.20, 0.30, -0.05, 0.10],
            "pred": [-0.05, 0.03, -0.01, -0.02, 0.25, np.nan, np.nan, 0.12],
        }
    )


def test_classify_stable_with_nan(small_df):
    cls = classify_stable(small_df["true"], small_df["pred"])
    assert cls.tp.tolist() == [True, False, True, False, False, False, False, False]
    assert cls.fn.tolist() == [False, True, False, False, False, False, True, False]
    assert cls.fp.tolist() == [False, False, False, True, False, False, False, False]
    assert cls.tn.tolist() == [False, False, False, False, True, True, False, True]
    total = cls.tp.astype(int) + cls.fp + cls.tn + cls.fn
    assert (total == 1).all()


def test_stable_metrics_hand_computed(small_df):
    m = stable_metrics(small_df["true"], small_df["pred"])
    assert list(m) == list(METRIC_KEYS)
    # TP 2, FN 2, FP 1, TN 3, N = 8 (the two NaN rows count)
    assert (m["TP"], m["FN"], m["FP"], m["TN"]) == (2, 2, 1, 3)
    assert m["Precision"] == pytest.approx(2 / 3)
    assert m["Recall"] == pytest.approx(0.5)
    assert m["F1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert m["Accuracy"] == pytest.approx(5 / 8)
    assert m["DAF"] == pytest.approx((2 / 3) / (4 / 8))
    assert m["FPR"] == pytest.approx(0.25)
    # regression on the 6 non-missing pairs only
    err = np.array([0.05, 0.05, -0.01, -0.07, 0.05, 0.02])
    true = np.array([-0.10, -0.02, 0.00, 0.05, 0.20, 0.10])
    assert m["MAE"] == pytest.approx(np.abs(err).mean())
    assert m["RMSE"] == pytest.approx(np.sqrt((err**2).mean()))
    assert m["R2"] == pytest.approx(1 - (err**2).sum() / ((true - true.mean()) ** 2).sum())


def test_stable_metrics_threshold_and_prevalence(small_df):
    m = stable_metrics(small_df["true"], small_df["pred"], stability_threshold=0.1, prevalence=0.25)
    # actual stable (<= 0.1): rows 0,1,2,3,6,7 ; predicted (<= 0.1): rows 0,1,2,3
    assert (m["TP"], m["FN"], m["FP"], m["TN"]) == (4, 2, 0, 2)
    assert m["DAF"] == pytest.approx(1.0 / 0.25)


def test_nan_truth_is_in_no_class_and_dropped_from_the_errors():
    """As MBD: a material without a DFT hull distance is neither stable nor unstable (not in N) and its pair is
    dropped from MAE/RMSE/R²."""
    classes = classify_stable([np.nan, 0.1, -0.1], [0.0, 0.1, -0.2])
    assert [int(c.sum()) for c in classes] == [1, 0, 1, 0]  # tp, fp, tn, fn
    m = stable_metrics([np.nan, 0.1, -0.1], [0.0, 0.1, -0.2])
    assert m["Accuracy"] == 1.0 and m["MAE"] == pytest.approx(0.05)


def test_r2_edge_cases_as_sklearn():
    """Constant truth: 1.0 for a perfect prediction, else 0.0 (not NaN); one pair: NaN; an infinite
    prediction raises (sklearn's r2_score does)."""
    assert regression_metrics([0.1, 0.1, 0.1], [0.1, 0.1, 0.1])["R2"] == 1.0
    assert regression_metrics([0.0, 0.0, 0.0], [0.1, 0.0, -0.1])["R2"] == 0.0
    assert np.isnan(regression_metrics([0.1, np.nan], [0.1, 0.2])["R2"])
    with pytest.raises(ValueError, match="infinite"):
        regression_metrics([0.1, 0.2, 0.3], [0.1, np.inf, 0.3])


def test_predicted_hull_distance():
    e_form_pred = pd.Series([-1.00, -0.50, 5.0, np.nan], index=list("abcd"))
    e_form_dft = np.array([-1.10, -0.40, -0.5, -1.0])
    e_hull_dft = np.array([0.05, 0.00, 0.10, 0.2])
    out = predicted_hull_distance(e_form_pred, e_form_dft, e_hull_dft)
    assert list(out.index) == list("abcd")
    assert out["a"] == pytest.approx(0.15)
    assert out["b"] == pytest.approx(-0.10)
    assert np.isnan(out["c"])  # 5.5 eV/atom off -> missing
    assert np.isnan(out["d"])
    plain = predicted_hull_distance([0.0], [-4.9], [0.0])  # exactly 4.9 off: kept
    assert plain[0] == pytest.approx(4.9)


def test_predicted_hull_distance_rounds_inputs_then_adds():
    # MBD rounds the three inputs to 3 decimals and adds; rounding the sum instead differs here:
    # round(0.0004 + (-0.9996 + 1.0004)) = 0.001 (unstable), 0.0 + (-1.0 + 1.0) = 0 (stable)
    args = ([-0.9996], [-1.0004], [0.0004])
    assert predicted_hull_distance(*args)[0] == pytest.approx(0.0, abs=1e-12)
    assert np.round(predicted_hull_distance(*args, decimals=None)[0], 3) == pytest.approx(0.001)
    # the 5 eV/atom mask applies to the unrounded error
    assert np.isnan(predicted_hull_distance([5.0004], [0.0], [0.0])[0])


def test_most_stable_k():
    df = pd.DataFrame(
        {
            "e_above_hull_pred": [0.3, -0.2, np.nan, -0.5, 0.0],
            "unique_prototype": [True, False, True, True, True],
        },
        index=list("abcde"),
    )
    assert list(most_stable_k(df, k=2).index) == ["d", "b"]
    assert list(most_stable_k(df, k=2, unique_prototype_col="unique_prototype").index) == ["d", "e"]
    # fewer predictions than k: the missing one fills the selection last (MBD)
    assert list(most_stable_k(df, k=10).index) == ["d", "b", "e", "a", "c"]


def test_discovery_subsets_daf_prevalence_unrounded():
    # -0.0004 rounds to -0.0 (stable) but 0.0004 rounds to 0.0 (stable) while unrounded it is unstable
    hull = pd.Series([-0.1, 0.0004, 0.2, -0.05], index=list("abcd"))
    e_form_dft = pd.Series([-1.0, -1.0, -1.0, -1.0], index=hull.index)
    pred = pd.Series([-1.0, -0.9, -1.3, np.nan], index=hull.index)
    out = discovery_metrics_by_subset(pred, e_form_dft, hull, pd.Series(True, index=hull.index), k=2)
    uniq = out["unique_prototypes"]
    assert (uniq["TP"], uniq["FP"], uniq["TN"], uniq["FN"]) == (1, 1, 0, 2)  # b is stable after rounding
    assert uniq["DAF"] == pytest.approx(uniq["Precision"] / 0.5)  # prevalence 2/4 from unrounded values
    assert out["full_test_set"]["DAF"] == pytest.approx(uniq["Precision"] / 0.75)  # its own rounded prevalence
    assert out["most_stable_10k"]["TP"] + out["most_stable_10k"]["FP"] == 2


def test_full_metrics_from_rows_subsets():
    rng = np.random.default_rng(0)
    n = 200
    hull = rng.normal(0.05, 0.1, n)
    e_form = rng.normal(-1, 0.5, n)
    df = pd.DataFrame({
        "key": [f"m{i}" for i in range(n)], "status": ["ok"] * (n - 5) + ["failed"] * 5,
        "e_form_dft": e_form, "e_form_pred": e_form + rng.normal(0, 0.05, n),
        "e_above_hull_dft": hull, "unique_prototype": rng.random(n) < 0.8,
        "rmsd": rng.random(n) * 0.1, "converged": True,
    })  # fmt: skip
    m = full_metrics_from_rows(df, k=50)
    pred = predicted_hull_distance(df.e_form_pred.where(df.status == "ok"), df.e_form_dft, hull)
    uniq = df.unique_prototype.to_numpy()
    ref = stable_metrics(np.round(hull, 3)[uniq], pred[uniq], prevalence=(hull[uniq] <= 0).mean())  # unrounded (MBD)
    assert m["F1"] == pytest.approx(ref["F1"]) and m["DAF"] == pytest.approx(ref["DAF"])
    assert m["full_TP"] + m["full_FN"] == (np.round(hull, 3) <= 0).sum()
    assert sum(m[f"most_stable_10k_{c}"] for c in ("TP", "FP", "TN", "FN")) == 50
    assert m["RMSD"] == pytest.approx((df.rmsd[:-5].sum() + 5) / n)


def test_offline_metrics_from_rows_hand_computed():
    """Failed rows and errors over 5 eV/atom are missing predictions (not in the MAE); RMSD counts failed
    rows as 1.0; success rate = converged ok rows / all rows."""
    df = pd.DataFrame({
        "status": ["ok", "ok", "ok", "failed"], "e_form_dft": [-1.0, -2.0, 0.5, -1.0],
        "e_form_pred": [-1.1, -1.8, 6.0, np.nan], "e_form_dft_mp2020": [-1.2, -2.2, 0.3, -1.2],
        "e_form_pred_mp2020": [-1.2, -2.2, 0.3, np.nan], "refs_consistent": [True, False, True, False],
        "rmsd": [0.01, 0.03, 0.02, np.nan], "rmsd_start": [0.1, 0.1, 0.1, 0.1], "converged": [True, True, False, False],
        "n_steps": [10, 20, 30, 0], "relax_s": [1.0, 2.0, 3.0, 0.0],
    })  # fmt: skip
    m = offline_metrics_from_rows(df)
    assert m["n_missing"] == 2  # row 3: |6.0 − 0.5| > 5 eV/atom; row 4 failed
    assert m["e_form_MAE_1k"] == pytest.approx((0.1 + 0.2) / 2)
    assert m["e_form_RMSE_1k"] == pytest.approx(np.sqrt((0.01 + 0.04) / 2))
    assert m["e_form_MAE_1k_mp2020_corrected"] == 0.0 and m["e_form_MAE_1k_refs_consistent"] == pytest.approx(0.1)
    assert not {"MAE", "RMSE", "R2"} & set(m)  # MBD's names are hull-distance errors on WBM: not reported here
    assert m["RMSD"] == pytest.approx((0.01 + 0.03 + 0.02 + 1.0) / 4) and m["RMSD_start"] == pytest.approx(0.1 * 3 / 4 + 0.25)
    assert m["success_rate"] == 0.5 and m["n_converged"] == 2 and m["mean_steps"] == 20.0
