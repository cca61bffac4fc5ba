"""Physical priors: ZBL nuclear repulsion and the isolated-atom energies e0.

Energies in eV, distances in Å.
"""

from __future__ import annotations

import torch
from ase.data import covalent_radii
from torch import Tensor, nn

from geodite.model.ops import scatter_sum
from geodite.model.radial import polynomial_envelope

#: e²/(4πε₀) in eV·Å
COULOMB_EV_ANGSTROM = 14.3996
#: Bohr radius in Å, as used by the ZBL screening length
BOHR_ANGSTROM = 0.529

#: PBE isolated-atom energies (eV) indexed by Z (0 unused; 0.0 marks elements without a value), as used by
#: MACE-MP and the upstream Geodite-MP constants (experiments/mptrj/constants_dft.yaml, MPtrj_).
MPTRJ_E0 = (
    0.0, -1.117340087890625, 0.0009675900219008327, -0.29754725098609924, -0.017816970124840736,
    -0.2688501179218292, -1.2617350816726685, -3.1243879795074463, -1.548387885093689, -0.5188204646110535,
    -0.012416009791195393, -0.22883163392543793, -0.00951015017926693, -0.21630193293094635,
    -0.8263903260231018, -1.8881661891937256, -0.8916077017784119, -0.25828272104263306,
    -0.0492597296833992, -0.22697913646697998, -0.0927795022726059, -2.1139636039733887,
    -2.5005486011505127, -3.7047717571258545, -5.602619647979736, -5.325411796569824, -3.5200493335723877,
    -1.9355502128601074, -0.9351968765258789, -0.600258469581604, -0.16513319313526154,
    -0.32990652322769165, -0.779718279838562, -1.683678150177002, -0.7694103121757507,
    -0.2221384346485138, -0.033587899059057236, -0.18817239999771118, -0.06826294213533401,
    -2.170842170715332, -2.2857930660247803, -3.1342976093292236, -4.602114200592041, -3.452014923095703,
    -2.380735158920288, -1.4685550928115845, -1.4773125648498535, -0.3395458459854126,
    -0.16843877732753754, -0.35470980405807495, -0.8364265561103821, -1.4110199213027954,
    -0.6574087738990784, -0.1896457076072693, -0.008575820364058018, -0.13771876692771912,
    -0.03457659110426903, -0.4558080732822418, -1.330917477607727, -0.2967182397842407,
    -0.3039119243621826, -0.30898427963256836, -0.2547089159488678, -8.38001537322998, -10.388965606689453,
    -0.30595049262046814, -0.306762158870697, -0.30874666571617126, -0.3161092698574066,
    -0.25190040469169617, -0.06431414186954498, -0.3199758529663086, -3.5277092456817627,
    -3.544922113418579, -4.656583786010742, -4.70108699798584, -2.8825721740722656, -1.4677929878234863,
    -0.5026993751525879, -0.28801193833351135, -0.12454673647880554, -0.3173719346523285,
    -0.7764493227005005, -1.3262728452682495, 0.0, 0.0, 0.0, 0.0, 0.0, -0.2682715058326721,
    -0.9081742763519287, -2.476531982421875, -4.904385566711426, -7.633789539337158, -10.772377014160156,
) + (0.0,) * 24


class ZBLRepulsion(nn.Module):
    """Learnable Ziegler–Biersack–Littmark repulsion, per receiving atom (eV).

    a = a_f · 0.529 / (Z_u^κ + Z_v^κ), φ(x) = Σ_k c_k exp(−d_k x),
    V_ij = ½ · 14.3996 · Z_u Z_v / r · φ(r/a) · env₅(r / (R_cov,u + R_cov,v)), summed onto the receiver.
    Each directed edge carries half of the pair energy, so a pair counts once in total.
    """

    def __init__(self, envelope_p: int = 5):
        super().__init__()
        self.envelope_p = float(envelope_p)
        self.a_factor = nn.Parameter(torch.tensor(0.4543, dtype=torch.float64))
        self.z_power = nn.Parameter(torch.tensor(0.300, dtype=torch.float64))
        self.screen_coefs = nn.Parameter(torch.tensor([0.1818, 0.5099, 0.2802, 0.02817], dtype=torch.float64))
        self.screen_exps = nn.Parameter(torch.tensor([3.2, 0.9423, 0.4028, 0.2016], dtype=torch.float64))
        self.register_buffer("covalent_radii", torch.tensor(covalent_radii, dtype=torch.float64))

    def forward(self, z: Tensor, r: Tensor, edge_index: Tensor) -> Tensor:
        """z [N] (long), r [E] Å, edge_index [2, E] -> per-atom energy [N] eV."""
        sender, receiver = edge_index[0], edge_index[1]
        z_u = z[sender].to(r.dtype)
        z_v = z[receiver].to(r.dtype)
        a = self.a_factor * BOHR_ANGSTROM / (z_u**self.z_power + z_v**self.z_power)
        x = (r / a).unsqueeze(-1)
        screening = (self.screen_coefs * torch.exp(-self.screen_exps * x)).sum(dim=-1)
        pair = COULOMB_EV_ANGSTROM * z_u * z_v / r * screening
        r_max = self.covalent_radii[z[sender]] + self.covalent_radii[z[receiver]]
        envelope = polynomial_envelope(r / r_max, self.envelope_p)
        return scatter_sum(0.5 * pair * envelope, receiver, z.shape[0])
