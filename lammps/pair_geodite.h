/* Geodite as a LAMMPS pair style: runs an exported AOTInductor package (geodite export) on each rank, one
   stage at a time, exchanging node features between ranks after every message-passing step.

   Each rank's graph has its owned atoms and the ghost atoms within the cutoff of one of them as nodes (LAMMPS's
   shell is cutoff + skin: the other ghosts only relay the exchanges) and the edges of its owned atoms (full
   neighbour list) as edges, so only owned atoms have complete neighbourhoods. The package's stages (geodite/model/stages.py: embedding, each layer's messages, the last
   readout) each end where a sum over neighbours was taken; after each one the owners' node features
   (h [F], X [8, F] per atom) are copied to their ghost rows by forward communication (pack/unpack_forward_comm),
   so the next stage sees exact features everywhere. Each stage also returns the tensors its vector-Jacobian
   product needs, kept until the backward pass. Backward, stage by stage in reverse, the stage's
   vector-Jacobian product gives the gradients of the energy with respect to its edge vectors and its input
   features, and reverse communication adds the ghost rows' feature gradients to their owners. The summed
   edge-vector gradients give forces (owned and ghost atoms; LAMMPS's reverse communication adds the ghosts'
   to their owners, newton on), the global virial (sum r.f) and the per-atom virials (half of each edge's
   -r (x) dE/dr to each end: compute stress/atom, centroid/stress/atom). Serial runs are the same (periodic
   images are ghost atoms). Package format 5 (geodite/export.py); packages of format 3 call Geodite's
   edge-chunked kernels (geodite:: custom operators), which lmp_geodite links (libgeodite_ops). */

#ifdef PAIR_CLASS
// clang-format off
PairStyle(geodite,PairGeodite);
// clang-format on
#else

#ifndef LMP_PAIR_GEODITE_H
#define LMP_PAIR_GEODITE_H

#include "pair.h"

#include <memory>
#include <string>
#include <vector>

namespace torch::inductor {
class AOTIModelPackageLoader;
}
namespace at {
class Tensor;
}

namespace LAMMPS_NS {

class PairGeodite : public Pair {
 public:
  PairGeodite(class LAMMPS *);
  ~PairGeodite() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  void setup() override;
  double init_one(int, int) override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

 private:
  void allocate();
  void exchange(at::Tensor &h, at::Tensor &X, bool steerable, bool reverse);
  template <typename T> int pack_rows(int n, const int *rows, int first, double *buf);
  template <typename T> void unpack_rows(int n, const int *rows, int first, const double *buf, bool add);
  static constexpr int PACKAGE_FORMAT = 5;  // the package format read (geodite/export.py): stages, VJPs, saved
  std::vector<std::unique_ptr<torch::inductor::AOTIModelPackageLoader>> stages, vjps;
  std::vector<long> type_to_z;  // LAMMPS type (1-based) -> atomic number
  double cutoff = 0.0;          // model cutoff, Angstrom
  int num_channels = 0;         // F: h has F values per atom, X 8 F
  bool double_precision = true;
  std::vector<int> row_atoms;   // the LAMMPS atom of each row of this step's graph (owned atoms first)
  // what the exchanges pack and unpack: h [nall, F] and X [nall, 8, F] of every LAMMPS atom (contiguous, the
  // package's dtype), and the LAMMPS atom of each graph row (int64); defined in pair_geodite.cpp
  struct Exchange;
  std::unique_ptr<Exchange> comm_buffers;
  bool comm_steerable = true;   // whether X travels too
  // GEODITE_PROFILE=FILE: wall seconds of each phase of compute() summed over the steps of the last run (set-up
  // excluded), written to FILE.RANK when the pair style is deleted (lammps/profile_pair.py reads them)
  enum Phase { EDGES, INPUTS, STAGES, COPIES, FORWARD_COMM, VJPS, REVERSE_COMM, FORCES, NUM_PHASES };
  std::string profile_path;
  double phase_seconds[NUM_PHASES] = {};
  long profiled_calls = 0;
  int64_t profiled_rows = 0, profiled_atoms = 0, profiled_edges = 0;    // the last step's graph, LAMMPS's atoms
  double phase_start = 0.0;
  bool profiling = false;    // this compute() call is timed
  void phase_end(Phase phase);
};

}    // namespace LAMMPS_NS

#endif
#endif
