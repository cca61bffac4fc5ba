#!/usr/bin/env bash
# Build lmp_geodite (Debian's LAMMPS 20220106 + OpenMPI + pair_style geodite, libtorch from the torch wheel,
# Geodite's kernels libgeodite_ops).
# Usage: lammps/build.sh PYTHON BUILD_DIR   (make lammps runs it). Needs root for apt-get on first use.
set -euo pipefail
PYTHON=${1:?python with torch}
BUILD=${2:?build directory}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)

# 1. LAMMPS library, MPI and compilers (Debian bookworm)
if [ ! -e /usr/lib/x86_64-linux-gnu/liblammps.so ] || ! command -v mpicxx > /dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq liblammps-dev lammps openmpi-bin libopenmpi-dev cmake g++
fi

# 2. liblammps-dev ships only part of the headers a pair style needs (no neigh_request.h, fmt/, exceptions.h):
#    take all of src/*.h from Debian's source package of the same version
HEADERS="$BUILD/lammps-headers"
if [ ! -e "$HEADERS/neigh_request.h" ]; then
  version=$(dpkg-query -W -f='${Version}' liblammps-dev)
  if ! apt-get source --print-uris "lammps=$version" > /dev/null 2>&1; then
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: %s\n' \
      /usr/share/keyrings/debian-archive-keyring.gpg > /etc/apt/sources.list.d/lammps-src.sources
    apt-get update -qq
  fi
  (cd "$BUILD" && apt-get source --download-only -qq "lammps=$version")
  mkdir -p "$HEADERS"
  tar xJf "$BUILD"/lammps_*.orig.tar.xz -C "$HEADERS" --strip-components=2 --wildcards '*/src/*.h' '*/src/fmt/*'
  cmp -s "$HEADERS/pair.h" /usr/include/lammps/pair.h || { echo "LAMMPS headers do not match liblammps-dev" >&2; exit 1; }
fi

# 3. Geodite's kernels (the geodite:: operators that exported packages call), by the recipe the exporter uses
OPS=$(nice -n 5 "$PYTHON" -c 'import sys; from geodite.custom_ops import build_library; print(build_library(sys.argv[1]))' \
  "$BUILD")

# 4. pair_style geodite and the lmp_geodite executable, linked to the kernels
TORCH_CMAKE=$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S "$HERE" -B "$BUILD/cmake" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_CMAKE" \
  -DLAMMPS_HEADERS="$HEADERS" -DLAMMPS_LIBRARY=/usr/lib/x86_64-linux-gnu/liblammps.so \
  -DGEODITE_OPS_LIBRARY="$OPS" > "$BUILD/cmake.log"
nice -n 5 cmake --build "$BUILD/cmake" -j 1
ln -sf cmake/lmp_geodite "$BUILD/lmp_geodite"
echo "built $BUILD/lmp_geodite"
