"""bench kappa's MBD rates: failure_rate (censored fraction) and imaginary_mode_rate."""

import numpy as np
import pandas as pd

from geodite.metrics.phonons import SRME_PENALTY
from geodite.tasks.kappa import kappa_metrics


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
