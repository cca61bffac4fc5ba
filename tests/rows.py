"""Comparing stored result rows of two runs that chunked their items differently."""

from __future__ import annotations

import numpy as np


def assert_rows_close(ours: dict[str, dict], theirs: dict[str, dict], rtol: float = 1e-9, atol: float = 1e-9) -> None:
    """The same items with the same fields; numbers (and lists of them) equal to ``rtol``/``atol``, everything
    else exactly. Runs that batch different items per model call agree to round-off, not bit for bit."""
    assert sorted(ours) == sorted(theirs)
    for key, row in ours.items():
        assert row.keys() == theirs[key].keys(), key
        for field, value in row.items():
            if isinstance(value, (float, list)):
                np.testing.assert_allclose(np.asarray(value, float), np.asarray(theirs[key][field], float),
                                           rtol=rtol, atol=atol, err_msg=f"{key} {field}")
            else:
                assert value == theirs[key][field], (key, field)
