"""Figures a newcomer opens first: the dimer-curve title inside the figure, whole-number histogram counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geodite.tasks.diatomics import curves_figure
from geodite.tasks.discovery import error_histogram


def _curve_row(symbol: str, z: int) -> dict:
    r = np.geomspace(0.1, 6.0, 119)
    return {"key": symbol, "status": "ok", "element": symbol, "Z": z, "distances": r.tolist(),
            "energies": (1.0 / r**6 - 2.0 / r**3).tolist()}


@pytest.mark.parametrize("symbols", [["H"], ["H", "O"], ["H", "He", "Li", "Be", "B", "C"]])
@pytest.mark.parametrize("zoom", [False, True])
def test_dimer_curves_title_is_not_clipped(symbols, zoom):
    """With one or two elements (README: --elements H,O) the title ran off both sides of the figure."""
    import matplotlib.pyplot as plt
    from ase.data import atomic_numbers

    fig = curves_figure(pd.DataFrame([_curve_row(s, atomic_numbers[s]) for s in symbols]), "geodite", zoom)
    fig.canvas.draw()
    title = fig._suptitle.get_window_extent(fig.canvas.get_renderer())
    box = fig.bbox
    plt.close(fig)
    assert box.x0 <= title.x0 and title.x1 <= box.x1 and title.y1 <= box.y1


def test_error_histogram_counts_are_whole_numbers():
    """Five discovery items gave a count axis of 0.0, 0.5, 1.0, 1.5 ..."""
    import matplotlib.pyplot as plt

    fig = error_histogram(np.array([0.01, -0.02, 0.05, 0.11, -0.07]), "geodite")
    fig.canvas.draw()
    ticks = fig.axes[0].get_yticks()
    plt.close(fig)
    assert len(ticks) >= 2 and np.allclose(ticks, np.round(ticks))
