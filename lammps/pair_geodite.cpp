/* pair_style geodite: see pair_geodite.h and docs/lammps.md.

   Input script:
     units metal
     newton on
     pair_style geodite
     pair_coeff * * model.pt2 Si O     # the exported package, then one element per atom type
*/

#include "pair_geodite.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neigh_request.h"
#include "neighbor.h"
#include "update.h"

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <string>

using namespace LAMMPS_NS;

namespace {

const char *const ELEMENTS[] = {
    "X",  "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si", "P",  "S",
    "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As",
    "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn",
    "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho",
    "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",  "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po",
    "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md",
    "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};

long atomic_number(const std::string &symbol)
{
  const auto count = static_cast<long>(sizeof(ELEMENTS) / sizeof(ELEMENTS[0]));
  for (long z = 1; z < count; ++z)
    if (symbol == ELEMENTS[z]) return z;
  return -1;
}

}    // namespace

PairGeodite::PairGeodite(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  ghostneigh = 1;
  centroidstressflag = CENTROID_AVAIL;    // cvatom: the full (non-symmetric) per-atom virial
}

PairGeodite::~PairGeodite()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

void PairGeodite::allocate()
{
  allocated = 1;
  const int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  memory->create(cutghost, n + 1, n + 1, "pair:cutghost");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
}

void PairGeodite::settings(int narg, char **)
{
  if (narg != 0) error->all(FLERR, "pair_style geodite takes no arguments (the model goes in pair_coeff)");
}

void PairGeodite::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff * * MODEL.pt2 followed by one element symbol per atom type ({} types)", ntypes);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for geodite must be '* * MODEL.pt2 ELEMENTS...'");
  try {
    model = std::make_unique<torch::inductor::AOTIModelPackageLoader>(arg[2]);
  } catch (const std::exception &e) {
    // format 3 packages call Geodite's kernels: lmp_geodite links them; a LAMMPS built otherwise must too
    const bool kernels = std::string(e.what()).find("geodite::") != std::string::npos;
    error->all(FLERR, "pair geodite: cannot load {}: {}{}", arg[2], e.what(),
               kernels ? " (link Geodite's kernels, geodite/csrc/fused_ops.cpp: docs/lammps.md)" : "");
  }
  auto metadata = model->get_metadata();
  for (const char *key : {"cutoff", "num_layers", "dtype", "elements"})
    if (metadata.find(key) == metadata.end())
      error->all(FLERR, "pair geodite: {} is not a Geodite package (no '{}' in its metadata)", arg[2], key);
  // format 1 (no 'format' key): energies and forces only; 2 adds the per-atom virials; 3 calls the geodite::
  // operators, which are registered once loaded (geodite/export.py)
  package = arg[2];
  package_format = metadata.count("format") ? std::stoi(metadata["format"]) : 1;
  if (package_format > PACKAGE_FORMAT)
    error->all(FLERR, "pair geodite: {} is package format {}, newer than this pair style reads ({})", arg[2],
               package_format, PACKAGE_FORMAT);
  cutoff = std::stod(metadata["cutoff"]);
  num_layers = std::stoi(metadata["num_layers"]);
  double_precision = metadata["dtype"] == "float64";
  const std::string supported = "," + metadata["elements"] + ",";

  type_to_z.assign(ntypes + 1, 0);
  for (int type = 1; type <= ntypes; ++type) {
    const long z = atomic_number(arg[2 + type]);
    if (z < 0) error->all(FLERR, "pair geodite: '{}' (type {}) is not an element symbol", arg[2 + type], type);
    if (supported.find("," + std::to_string(z) + ",") == std::string::npos)
      error->all(FLERR, "pair geodite: the model does not cover element {} (type {})", arg[2 + type], type);
    type_to_z[type] = z;
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

void PairGeodite::init_style()
{
  if (force->newton_pair == 0) error->all(FLERR, "pair style geodite requires newton pair on");
  if (strcmp(update->unit_style, "metal") != 0) error->all(FLERR, "pair style geodite requires units metal");
  const int request = neighbor->request(this, instance_me);
  neighbor->requests[request]->half = 0;
  neighbor->requests[request]->full = 1;
  neighbor->requests[request]->ghost = 1;
  // every owned atom's energy is exact if the ghosts reach (layers + 1) cutoffs: one per message-passing
  // step (node embedding, then each layer), plus the skin atoms may move by between neighbour builds
  const double ghost_cutoff = (num_layers + 1) * cutoff + neighbor->skin;
  if (comm->cutghostuser < ghost_cutoff) {
    comm->cutghostuser = ghost_cutoff;
    if (comm->me == 0)
      utils::logmesg(lmp, "pair geodite: ghost cutoff {:.3f} A = ({} layers + 1) x {:.3f} A + skin\n",
                     ghost_cutoff, num_layers, cutoff);
  }
}

double PairGeodite::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "pair geodite: all pair coeffs are not set");
  cutghost[i][j] = cutghost[j][i] = cutoff;
  return cutoff;
}

void PairGeodite::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if ((vflag_atom || cvflag_atom) && package_format < 2)
    error->all(FLERR, "pair geodite: {} has no per-atom virials (package format {}): export it again with "
               "geodite export", package, package_format);

  double **x = atom->x;
  double **f = atom->f;
  const int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const double cutoff_squared = cutoff * cutoff;

  // edges j -> i of every owned and ghost atom i within the cutoff (the list holds cutoff + skin)
  std::vector<int64_t> senders, receivers;
  const int num_lists = list->inum + list->gnum;
  for (int ii = 0; ii < num_lists; ++ii) {
    const int i = list->ilist[ii];
    const int *neighbours = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; ++jj) {
      const int j = neighbours[jj] & NEIGHMASK;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz < cutoff_squared) {
        senders.push_back(j);
        receivers.push_back(i);
      }
    }
  }
  const auto num_edges = static_cast<int64_t>(senders.size());
  const auto dtype = double_precision ? torch::kFloat64 : torch::kFloat32;
  const auto longs = torch::TensorOptions().dtype(torch::kInt64);
  const auto reals = torch::TensorOptions().dtype(dtype);

  auto positions = torch::from_blob(x[0], {nall, 3}, torch::kFloat64).to(dtype).clone();
  auto z = torch::empty({nall}, longs);
  auto *z_data = z.data_ptr<int64_t>();
  for (int i = 0; i < nall; ++i) z_data[i] = type_to_z[type[i]];
  auto local = torch::zeros({nall}, reals);
  local.slice(0, 0, nlocal).fill_(1.0);
  auto edge_index = torch::stack({torch::tensor(senders, longs), torch::tensor(receivers, longs)});
  std::vector<at::Tensor> inputs = {
      positions,                                       // [N, 3] Angstrom
      torch::zeros({1, 3, 3}, reals),                  // cell: ghosts are explicit, no periodic images
      torch::zeros({1, 3}, torch::TensorOptions().dtype(torch::kBool)),
      z,
      torch::zeros({nall}, longs),                     // batch: one structure
      edge_index.reshape({2, num_edges}),
      torch::zeros({num_edges, 3}, reals),             // shifts
      local};
  auto outputs = model->run(inputs);
  const auto atomic = outputs[1].to(torch::kFloat64).contiguous();
  const auto forces = outputs[2].to(torch::kFloat64).contiguous();
  const double *force_data = forces.data_ptr<double>();
  for (int i = 0; i < nall; ++i)
    for (int k = 0; k < 3; ++k) f[i][k] += force_data[3 * i + k];
  if (eflag_global) eng_vdwl += outputs[0].to(torch::kFloat64).item<double>();
  if (eflag_atom) {
    const double *atomic_data = atomic.data_ptr<double>();
    for (int i = 0; i < nlocal; ++i) eatom[i] += atomic_data[i];
  }
  if (vflag_atom || cvflag_atom) tally_atomic_virials(outputs[4].to(torch::kFloat64).contiguous(), nall);
  if (vflag_fdotr) virial_fdotr_compute();
}

/* The package's per-atom virials W [nall, 3, 3] (eV, W = sum r (x) F, half of each edge to each end) into
   vatom (xx, yy, zz, xy, xz, yz) and cvatom (the same, then yx, zx, zy), owned and ghost atoms: compute
   stress/atom's reverse communication adds the ghosts' shares to their owners. */
void PairGeodite::tally_atomic_virials(const at::Tensor &virials, int nall)
{
  const double *w = virials.data_ptr<double>();
  const int rows[9] = {0, 1, 2, 0, 0, 1, 1, 2, 2}, columns[9] = {0, 1, 2, 1, 2, 2, 0, 0, 1};
  for (int i = 0; i < nall; ++i) {
    for (int k = 0; k < 6 && vflag_atom; ++k) vatom[i][k] += w[9 * i + 3 * rows[k] + columns[k]];
    for (int k = 0; k < 9 && cvflag_atom; ++k) cvatom[i][k] += w[9 * i + 3 * rows[k] + columns[k]];
  }
}
