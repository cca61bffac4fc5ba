/* lmp_geodite: the LAMMPS executable of the linked liblammps with pair_style geodite registered.
   Usage is LAMMPS's own: mpirun -np 4 lmp_geodite -in in.script (see docs/lammps.md). */

#include "force.h"
#include "input.h"
#include "lammps.h"
#include "pair_geodite.h"

#include <mpi.h>

using namespace LAMMPS_NS;

static Pair *create_geodite(LAMMPS *lmp)
{
  return new PairGeodite(lmp);
}

int main(int argc, char **argv)
{
  MPI_Init(&argc, &argv);
  auto *lmp = new LAMMPS(argc, argv, MPI_COMM_WORLD);
  (*lmp->force->pair_map)["geodite"] = &create_geodite;
  lmp->input->file();
  delete lmp;
  MPI_Finalize();
  return 0;
}
