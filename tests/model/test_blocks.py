"""Unit checks of the physical building blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geodite.model.harmonics import DEGREE_SLICES, spherical_harmonics_l12
from geodite.model.radial import BesselBasis, CovalentDistanceWeighting, polynomial_envelope


def test_envelope_smooth_to_second_order_at_one():
    x = torch.tensor([0.0, 0.5, 1.0 - 1e-6, 1.0, 1.2], dtype=torch.float64, requires_grad=True)
    u = polynomial_envelope(x, 6.0)
    assert u[0].item() == 1.0 and u[3].item() == 0.0 and u[4].item() == 0.0
    (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (d2u,) = torch.autograd.grad(du.sum(), x)
    assert abs(du[2].item()) < 1e-9 and abs(d2u[2].item()) < 1e-3  # u' ~ (1−x)², u'' ~ (1−x)


def test_distance_weighting_initial_values():
    """At the published initial p̃, q̃: w(0.3) ≈ 0.001, w(1) ≈ 0.115, w → 1 slowly far away (t = r / ΣR_cov)."""
    weighting = CovalentDistanceWeighting()
    z = torch.tensor([1, 1])
    radius_sum = 2 * weighting.covalent_radii[1].item()
    r = torch.tensor([0.3, 1.0, 1000.0], dtype=torch.float64) * radius_sum
    w = weighting(z, r, torch.tensor([[0, 0, 0], [1, 1, 1]]))
    assert w[0].item() == pytest.approx(0.001, abs=5e-4)
    assert w[1].item() == pytest.approx(0.115, abs=5e-3)
    assert w[2].item() == pytest.approx(1.0, abs=0.01)


def test_bessel_basis_vanishes_at_cutoff():
    basis = BesselBasis(cutoff=6.0, num_rbf=12)
    values = basis(torch.tensor([6.0], dtype=torch.float64))
    assert torch.allclose(values, torch.zeros_like(values), atol=1e-12)


def test_spherical_harmonics_unit_norm_and_rotation_invariant_products():
    rng = np.random.default_rng(0)
    u = torch.tensor(rng.normal(size=(50, 3)))
    u = u / u.norm(dim=-1, keepdim=True)
    Y = spherical_harmonics_l12(u)
    for degree in DEGREE_SLICES:
        assert torch.allclose(Y[:, degree].norm(dim=-1), torch.ones(50, dtype=torch.float64))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    Yr = spherical_harmonics_l12(u @ torch.tensor(q).T)
    for degree in DEGREE_SLICES:  # inner products between directions are invariant within each degree
        gram = Y[:, degree] @ Y[:, degree].T
        gram_rotated = Yr[:, degree] @ Yr[:, degree].T
        assert torch.allclose(gram, gram_rotated, atol=1e-12)
