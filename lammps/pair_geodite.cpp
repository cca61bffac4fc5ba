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
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>

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

struct PairGeodite::Exchange {
  at::Tensor h, X, rows;
};

PairGeodite::PairGeodite(LAMMPS *lmp) : Pair(lmp), comm_buffers(std::make_unique<Exchange>())
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  centroidstressflag = CENTROID_AVAIL;    // cvatom: the full (non-symmetric) per-atom virial
  if (const char *path = std::getenv("GEODITE_PROFILE")) profile_path = path;
}

PairGeodite::~PairGeodite()
{
  if (!profile_path.empty()) {
    const char *names[NUM_PHASES] = {"edges", "inputs", "stages", "copies", "forward_comm", "vjps", "reverse_comm",
                                     "forces"};
    if (FILE *out = std::fopen((profile_path + "." + std::to_string(comm->me)).c_str(), "w")) {
      std::fprintf(out, "calls %ld\ngraph_rows %ld\nlammps_atoms %ld\ngraph_edges %ld\n", profiled_calls,
                   static_cast<long>(profiled_rows), static_cast<long>(profiled_atoms),
                   static_cast<long>(profiled_edges));
      for (int p = 0; p < NUM_PHASES; ++p) std::fprintf(out, "%s %.9f\n", names[p], phase_seconds[p]);
      std::fclose(out);
    }
  }
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairGeodite::allocate()
{
  allocated = 1;
  const int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
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
  // format 5: the stages stage0..stage{S-1}, each returning also the tensors its vector-Jacobian product
  // stage{k}_vjp takes (geodite/export.py). Format 4's products computed their stage again from its inputs;
  // packages of format 3 and older hold one graph over a (layers + 1)-cutoff ghost shell: neither runs here
  std::unordered_map<std::string, std::string> metadata;
  try {
    metadata = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(arg[2], "model");
  } catch (const std::exception &e) {
    error->all(FLERR, "pair geodite: cannot read {}: {}", arg[2], e.what());
  }
  for (const char *key : {"cutoff", "num_layers", "dtype", "elements"})
    if (metadata.find(key) == metadata.end())
      error->all(FLERR, "pair geodite: {} is not a Geodite package (no '{}' in its metadata)", arg[2], key);
  const int format = metadata.count("format") ? std::stoi(metadata["format"]) : 1;
  if (format != PACKAGE_FORMAT)
    error->all(FLERR, "pair geodite: {} is package format {}, this pair style reads format {} (per-layer stages "
               "with saved tensors): export it again with geodite export", arg[2], format, PACKAGE_FORMAT);
  const int num_stages = std::stoi(metadata["stages"]);
  stages.clear();
  vjps.clear();
  for (int k = 0; k < num_stages; ++k) {
    for (const bool vjp : {false, true}) {
      const std::string name = "stage" + std::to_string(k) + (vjp ? "_vjp" : "");
      try {
        (vjp ? vjps : stages).push_back(std::make_unique<torch::inductor::AOTIModelPackageLoader>(arg[2], name));
      } catch (const std::exception &e) {
        // packages of the ops kernels call Geodite's kernels: lmp_geodite links them; a LAMMPS built otherwise must
        const bool kernels = std::string(e.what()).find("geodite::") != std::string::npos;
        error->all(FLERR, "pair geodite: cannot load {} of {}: {}{}", name, arg[2], e.what(),
                   kernels ? " (link Geodite's kernels, geodite/csrc/fused_ops.cpp: docs/lammps.md)" : "");
      }
    }
  }
  cutoff = std::stod(metadata["cutoff"]);
  num_channels = std::stoi(metadata["num_channels"]);
  double_precision = metadata["dtype"] == "float64";
  comm_forward = comm_reverse = 9 * num_channels;    // h (F) and X (8 F) per atom
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
  // full list of the owned atoms: every edge j -> i with i owned; ghosts (one cutoff + skin, LAMMPS's default
  // shell) get their features from their owners after each stage
  const int request = neighbor->request(this, instance_me);
  neighbor->requests[request]->half = 0;
  neighbor->requests[request]->full = 1;
}

double PairGeodite::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "pair geodite: all pair coeffs are not set");
  return cutoff;
}

void PairGeodite::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  profiling = !profile_path.empty() && !update->setupflag;    // the steps of the run, not its set-up
  if (profiling) {
    ++profiled_calls;
    phase_start = MPI_Wtime();
  }

  double **x = atom->x;
  double **f = atom->f;
  const int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const double cutoff_squared = cutoff * cutoff;

  // edges j -> i of every owned atom i within the cutoff (the list holds cutoff + skin); r = x_j - x_i.
  // The graph's rows: the owned atoms (rows 0 .. nlocal - 1, as in LAMMPS), then only the ghosts that send to
  // an owned atom within the cutoff. The others, in the skin or beyond it, would cost every stage's per-atom
  // work for nothing (at 1,000 Si atoms LAMMPS's shell of cutoff + skin holds 2.5 ghosts per owned atom).
  std::vector<int64_t> senders, receivers, sender_rows;    // LAMMPS indices; the senders' graph rows
  std::vector<double> vectors_data;
  std::vector<int> row_of(nall, -1);    // graph row of each LAMMPS atom, -1 if not in the graph
  row_atoms.resize(nlocal);             // LAMMPS atom of each graph row
  for (int i = 0; i < nlocal; ++i) row_of[i] = row_atoms[i] = i;
  for (int ii = 0; ii < list->inum; ++ii) {
    const int i = list->ilist[ii];
    const int *neighbours = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; ++jj) {
      const int j = neighbours[jj] & NEIGHMASK;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz < cutoff_squared) {
        if (row_of[j] < 0) {
          row_of[j] = static_cast<int>(row_atoms.size());
          row_atoms.push_back(j);
        }
        senders.push_back(j);
        sender_rows.push_back(row_of[j]);
        receivers.push_back(i);
        vectors_data.insert(vectors_data.end(), {dx, dy, dz});
      }
    }
  }
  const auto num_edges = static_cast<int64_t>(senders.size());
  const auto num_rows = static_cast<int64_t>(row_atoms.size());
  if (profiling) {
    profiled_rows = num_rows;
    profiled_atoms = nall;
    profiled_edges = num_edges;
  }
  phase_end(EDGES);
  const auto dtype = double_precision ? torch::kFloat64 : torch::kFloat32;
  const auto longs = torch::TensorOptions().dtype(torch::kInt64);
  const auto reals = torch::TensorOptions().dtype(dtype);
  const int64_t F = num_channels;

  auto vectors = torch::from_blob(vectors_data.data(), {num_edges, 3}, torch::kFloat64).to(dtype).clone();
  auto z = torch::empty({num_rows}, longs);
  auto *z_data = z.data_ptr<int64_t>();
  for (int64_t r = 0; r < num_rows; ++r) z_data[r] = type_to_z[type[row_atoms[r]]];
  auto local = torch::zeros({num_rows}, reals);
  local.slice(0, 0, nlocal).fill_(1.0);
  auto edge_index = torch::stack({torch::tensor(sender_rows, longs), torch::tensor(receivers, longs)})
                        .reshape({2, num_edges});
  // the exchanges go through rows of every LAMMPS atom (a ghost outside the graph may relay features between
  // ranks): features [nall, F] and [nall, 8, F] in the package's dtype
  comm_buffers->rows = torch::from_blob(row_atoms.data(), {num_rows}, torch::kInt32).to(torch::kInt64);
  comm_buffers->h = torch::empty({nall, F}, reals);
  comm_buffers->X = torch::empty({nall, 8, F}, reals);
  phase_end(INPUTS);

  // forward: stage by stage, the owners' features to their ghosts after each (the last stage's are not used).
  // Each stage returns (energy, h, X, t, saved...): what its VJP needs, kept until the VJP has run (per row or
  // edge of this rank's graph). The exchange returns new tensors (a saved tensor may be an output's buffer).
  const int num_stages = static_cast<int>(stages.size());
  std::vector<std::vector<at::Tensor>> inputs(num_stages), saved(num_stages);    // per stage: h, X, t; saved
  at::Tensor h = torch::zeros({num_rows, F}, reals), X = torch::zeros({num_rows, 8, F}, reals);
  at::Tensor t = torch::zeros({num_edges, F}, reals);
  at::Tensor atomic = torch::zeros({num_rows}, reals);
  for (int k = 0; k < num_stages; ++k) {
    inputs[k] = {h, X, t};
    if (nlocal == 0) continue;    // nothing owned, no edges: zero rows, but the exchanges below still take part
    auto out = stages[k]->run({vectors, z, edge_index, h, X, t});
    phase_end(STAGES);
    atomic = atomic + out[0];
    h = out[1].contiguous();    // no copy unless a stage returns a strided view
    X = out[2].contiguous();
    t = out[3];
    saved[k].assign(out.begin() + 4, out.end());
    phase_end(COPIES);
    if (k + 1 < num_stages) exchange(h, X, k > 0, false);    // stage 0's X is zero everywhere
    phase_end(FORWARD_COMM);
  }
  if (nlocal == 0) for (int k = 0; k + 1 < num_stages; ++k) exchange(h, X, k > 0, false);
  phase_end(FORWARD_COMM);

  // backward: each stage's VJP on its inputs, output gradients and saved tensors, then the ghosts' feature
  // gradients to their owners
  at::Tensor grad_vectors = torch::zeros({num_edges, 3}, reals);
  at::Tensor grad_h = torch::zeros({num_rows, F}, reals), grad_X = torch::zeros({num_rows, 8, F}, reals);
  at::Tensor grad_t = torch::zeros({num_edges, F}, reals);
  phase_end(INPUTS);
  for (int k = num_stages - 1; k >= 0; --k) {
    if (nlocal > 0) {
      std::vector<at::Tensor> arguments = {vectors, z, edge_index, local, inputs[k][0], inputs[k][1], inputs[k][2],
                                           grad_h, grad_X, grad_t};
      arguments.insert(arguments.end(), saved[k].begin(), saved[k].end());
      saved[k].clear();
      auto out = vjps[k]->run(arguments);
      phase_end(VJPS);
      grad_vectors = grad_vectors + out[0];
      grad_h = out[1].contiguous();
      grad_X = out[2].contiguous();
      grad_t = out[3];
      phase_end(COPIES);
    }
    if (k > 0) exchange(grad_h, grad_X, k > 1, true);    // stage 1's X input is stage 0's constant zero
    phase_end(REVERSE_COMM);
  }

  // forces and per-atom virials from dE/dr of every edge: receiver +g, sender -g; W = -r (x) g, half to each end
  const auto gradients = grad_vectors.to(torch::kFloat64).contiguous();
  const double *g = gradients.data_ptr<double>();
  const bool atomic_virials = vflag_atom || cvflag_atom;
  const int rows[9] = {0, 1, 2, 0, 0, 1, 1, 2, 2}, columns[9] = {0, 1, 2, 1, 2, 2, 0, 0, 1};
  for (int64_t e = 0; e < num_edges; ++e) {
    const int i = static_cast<int>(receivers[e]), j = static_cast<int>(senders[e]);
    for (int a = 0; a < 3; ++a) {
      f[i][a] += g[3 * e + a];
      f[j][a] -= g[3 * e + a];
    }
    if (!atomic_virials) continue;
    const double *r = &vectors_data[3 * e];
    for (int k = 0; k < 9; ++k) {
      const double half = -0.5 * r[rows[k]] * g[3 * e + columns[k]];
      if (vflag_atom && k < 6) {
        vatom[i][k] += half;
        vatom[j][k] += half;
      }
      if (cvflag_atom) {
        cvatom[i][k] += half;
        cvatom[j][k] += half;
      }
    }
  }
  const auto energies = atomic.to(torch::kFloat64).contiguous();
  const double *e_data = energies.data_ptr<double>();
  for (int i = 0; i < nlocal; ++i) {
    if (eflag_global) eng_vdwl += e_data[i];
    if (eflag_atom) eatom[i] += e_data[i];
  }
  if (vflag_fdotr) virial_fdotr_compute();
  phase_end(FORCES);
}

void PairGeodite::setup()
{
  std::fill(std::begin(phase_seconds), std::end(phase_seconds), 0.0);    // profile each run's steps only
  profiled_calls = 0;
}

void PairGeodite::phase_end(Phase phase)
{
  if (!profiling) return;
  const double now = MPI_Wtime();
  phase_seconds[phase] += now - phase_start;
  phase_start = now;
}

/* h [rows, F] and, if steerable, X [rows, 8, F] of the graph's rows (the owned atoms first), replaced by new
   tensors. Forward (reverse = false): the owners' rows copied to their ghost rows. Reverse: the ghost rows
   added to their owners' rows, ghost rows zero. Both through the rows of every LAMMPS atom (comm_buffers). */
void PairGeodite::exchange(at::Tensor &h, at::Tensor &X, bool steerable, bool reverse)
{
  const int nlocal = atom->nlocal;
  comm_steerable = steerable;
  std::vector<at::Tensor *> features = {&h}, full = {&comm_buffers->h};
  if (steerable) {
    features.push_back(&X);
    full.push_back(&comm_buffers->X);
  }
  for (size_t n = 0; n < features.size(); ++n) {
    if (reverse) {
      full[n]->zero_();
      full[n]->index_copy_(0, comm_buffers->rows, *features[n]);
    } else if (nlocal > 0) {
      full[n]->slice(0, 0, nlocal).copy_(features[n]->slice(0, 0, nlocal));
    }
  }
  if (reverse) comm->reverse_comm_pair(this);
  else comm->forward_comm_pair(this);
  for (size_t n = 0; n < features.size(); ++n) {
    if (reverse) {
      auto summed = torch::zeros(features[n]->sizes(), features[n]->options());
      summed.slice(0, 0, nlocal).copy_(full[n]->slice(0, 0, nlocal));
      *features[n] = summed;
    } else {
      *features[n] = full[n]->index_select(0, comm_buffers->rows);
    }
  }
}

template <typename T> int PairGeodite::pack_rows(int n, const int *rows, int first, double *buf)
{
  const int F = num_channels;
  const T *h = comm_buffers->h.data_ptr<T>();
  const T *X = comm_buffers->X.data_ptr<T>();
  int m = 0;
  for (int q = 0; q < n; ++q) {
    const int row = rows ? rows[q] : first + q;
    for (int c = 0; c < F; ++c) buf[m++] = static_cast<double>(h[static_cast<int64_t>(row) * F + c]);
    if (comm_steerable)
      for (int c = 0; c < 8 * F; ++c) buf[m++] = static_cast<double>(X[static_cast<int64_t>(row) * 8 * F + c]);
  }
  return m;
}

template <typename T> void PairGeodite::unpack_rows(int n, const int *rows, int first, const double *buf, bool add)
{
  const int F = num_channels;
  T *h = comm_buffers->h.data_ptr<T>();
  T *X = comm_buffers->X.data_ptr<T>();
  int m = 0;
  for (int q = 0; q < n; ++q) {
    const int64_t row = rows ? rows[q] : first + q;
    for (int c = 0; c < F; ++c, ++m) h[row * F + c] = static_cast<T>(add ? h[row * F + c] + buf[m] : buf[m]);
    if (comm_steerable)
      for (int c = 0; c < 8 * F; ++c, ++m)
        X[row * 8 * F + c] = static_cast<T>(add ? X[row * 8 * F + c] + buf[m] : buf[m]);
  }
}

int PairGeodite::pack_forward_comm(int n, int *list, double *buf, int, int *)
{
  return double_precision ? pack_rows<double>(n, list, 0, buf) : pack_rows<float>(n, list, 0, buf);
}

void PairGeodite::unpack_forward_comm(int n, int first, double *buf)
{
  if (double_precision) unpack_rows<double>(n, nullptr, first, buf, false);
  else unpack_rows<float>(n, nullptr, first, buf, false);
}

int PairGeodite::pack_reverse_comm(int n, int first, double *buf)
{
  return double_precision ? pack_rows<double>(n, nullptr, first, buf) : pack_rows<float>(n, nullptr, first, buf);
}

void PairGeodite::unpack_reverse_comm(int n, int *list, double *buf)
{
  if (double_precision) unpack_rows<double>(n, list, 0, buf, true);
  else unpack_rows<float>(n, list, 0, buf, true);
}
