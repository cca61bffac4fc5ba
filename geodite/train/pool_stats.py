"""The chemical mix of a set of structures or frames, in the terms MPtrj is described by (issue #27): the
fraction with oxygen, with four or more elements, transition-metal oxides/fluorides (those with a +U metal
of MP's GGA+U scheme, and any), the elements covered and the atoms per cell."""

from __future__ import annotations

from typing import Iterable

import numpy as np

#: MP's GGA+U metals (their oxides and fluorides are computed with a Hubbard U)
U_METALS = frozenset(("Co", "Cr", "Fe", "Mn", "Mo", "Ni", "V", "W"))


def mix_stats(items: Iterable[tuple[str, int]]) -> dict[str, float]:
    """Statistics of (formula, atoms in the cell) items: ``n``; fractions ``with_O``, ``four_plus``
    (≥ 4 elements), ``u_oxide_fluoride`` (a :data:`U_METALS` metal with O or F), ``tm_oxide_fluoride`` (any
    transition metal with O or F); ``elements`` (distinct elements); atoms per cell ``atoms_median``,
    ``atoms_mean``, ``atoms_max``."""
    from pymatgen.core import Composition

    rows = [(frozenset(e.symbol for e in Composition(f).elements), n) for f, n in items]
    if not rows:
        raise ValueError("no structures")
    sets = [s for s, _ in rows]
    atoms = np.array([n for _, n in rows], dtype=float)

    def share(predicate) -> float:
        return float(np.mean([bool(predicate(s)) for s in sets]))

    from pymatgen.core import Element

    def transition(symbol: str) -> bool:
        return Element(symbol).is_transition_metal

    return {
        "n": len(rows),
        "with_O": share(lambda s: "O" in s),
        "four_plus": share(lambda s: len(s) >= 4),
        "u_oxide_fluoride": share(lambda s: s & U_METALS and s & {"O", "F"}),
        "tm_oxide_fluoride": share(lambda s: any(transition(e) for e in s) and s & {"O", "F"}),
        "elements": len(frozenset().union(*sets)),
        "atoms_median": float(np.median(atoms)),
        "atoms_mean": float(atoms.mean()),
        "atoms_max": float(atoms.max()),
    }
