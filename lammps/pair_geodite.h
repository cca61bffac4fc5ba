/* Geodite as a LAMMPS pair style: runs an exported AOTInductor package (geodite export) on each rank.

   Each rank builds one graph of its owned atoms and its ghost atoms, with the edges of LAMMPS's full
   neighbour list (ghost neighbours included). The ghost shell is (layers + 1) x cutoff (+ skin): the
   node embedding and every interaction layer each reach one cutoff further, so the energies of the
   owned atoms are exact without exchanging features between ranks. Only owned atoms' energies are
   summed; forces land on owned and ghost atoms and LAMMPS's reverse communication (newton on) adds
   the ghosts' forces to their owners. The global virial is sum r.f over owned and ghost atoms; per-atom
   virials (compute stress/atom, centroid/stress/atom) come from the package (format 2). Packages of format 3
   call Geodite's edge-chunked kernels (geodite:: custom operators), which lmp_geodite links (libgeodite_ops). */

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
  double init_one(int, int) override;

 private:
  void allocate();
  void tally_atomic_virials(const at::Tensor &virials, int nall);
  static constexpr int PACKAGE_FORMAT = 3;  // the newest package format read (geodite/export.py)
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> model;
  std::vector<long> type_to_z;  // LAMMPS type (1-based) -> atomic number
  double cutoff = 0.0;          // model cutoff, Angstrom
  int num_layers = 0;
  bool double_precision = true;
  std::string package;          // the package's path
  int package_format = 1;       // 1: no per-atom virials
};

}    // namespace LAMMPS_NS

#endif
#endif
