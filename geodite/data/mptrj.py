"""MPtrj and other labelled-structure sources, converted once into a memory-mapped frame store.

Readers (all yield ``Frame`` objects one at a time):

* the MPtrj JSON as published with CHGNet (``MPtrj_2022.9_full.json``, ~11 GB): ``{material id: {frame id:
  {structure (pymatgen dict), uncorrected_total_energy, corrected_total_energy, force, stress, magmom, …}}}``.
  Streamed with ``ijson`` when installed (``pip install ijson``), else loaded whole with ``json`` (needs
  tens of GB of RAM for the full file). Units: energies eV, forces eV/Å, **stress kBar in VASP's sign
  convention** (positive = compressive). Converted to eV/Å³ in ASE's convention (positive = tensile) by
  σ_ASE = −σ_kBar / 1602.1766208 (1 kBar = 0.1 GPa, 1 eV/Å³ = 160.21766208 GPa; the sign flip is the one
  applied by the SevenNet/MACE MPtrj conversions). Energy label: ``uncorrected_total_energy`` (Geodite's
  convention); the MP2020-corrected energy is kept alongside.
* Matbench Discovery's MPtrj extxyz zip (``2024-09-03-mp-trj.extxyz.zip``: one extxyz member per material,
  energies eV, forces eV/Å, stress eV/Å³ ASE sign).
* any extxyz file and any ASE database (energy/forces/stress from the stored calculator results; per-atom
  energies from the calculator results, ASE's ``energies``, or a database row's data, :func:`write_row`).
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from ase import Atoms

from geodite.data.dataset import Frame, FrameStore, FrameStoreWriter, frame_from_atoms
from geodite.data.downloads import cache_dir, download_file

#: eV/Å³ per kBar (1 kBar = 0.1 GPa; 1 eV/Å³ = 160.21766208 GPa)
EV_A3_PER_KBAR = 1.0 / 1602.1766208

#: MPtrj_2022.9_full.json (CHGNet's MPtrj, figshare article 23713842). The direct file URL is the one used
#: by CHGNet/Matbench Discovery's ``mp_trj_json_gz`` data-file entry as far as we know; no checksum is
#: published that we could verify offline, so none is stored (MPTRJ_JSON_SHA256 = None).
MPTRJ_JSON_URL = "https://figshare.com/ndownloader/files/41619375"
MPTRJ_JSON_NAME = "MPtrj_2022.9_full.json"
MPTRJ_JSON_SHA256: str | None = None
#: Matbench Discovery's MPtrj extxyz zip (data-files.yml: mp_trj_extxyz)
MPTRJ_EXTXYZ_URL = "https://figshare.com/ndownloader/files/49034296"
MPTRJ_EXTXYZ_NAME = "2024-09-03-mp-trj.extxyz.zip"


def kbar_to_ev_a3(stress_kbar) -> np.ndarray:
    """MPtrj/VASP stress (kBar, positive = compressive) → eV/Å³ in ASE's sign convention."""
    return -np.asarray(stress_kbar, dtype=np.float64) * EV_A3_PER_KBAR


def ev_a3_to_kbar(stress_ev_a3) -> np.ndarray:
    """Inverse of ``kbar_to_ev_a3``."""
    return -np.asarray(stress_ev_a3, dtype=np.float64) / EV_A3_PER_KBAR


def material_of_frame_id(frame_id: str) -> str:
    """'mp-1234-5-7' → 'mp-1234' (the MPtrj frame id is material-task-ionic step)."""
    parts = frame_id.split("-")
    return "-".join(parts[:2]) if len(parts) >= 2 else frame_id


def mptrj_frame(material_id: str, frame_id: str, record: dict) -> Frame:
    """One MPtrj JSON record → Frame (uncorrected energy; stress converted from kBar)."""
    structure = record["structure"]
    lattice = np.asarray(structure["lattice"]["matrix"], dtype=np.float64)
    sites = structure["sites"]
    from ase.data import atomic_numbers

    numbers = np.array([atomic_numbers[max(site["species"], key=lambda s: s.get("occu", 1))["element"]]
                        for site in sites])
    if all("xyz" in site for site in sites):
        positions = np.array([site["xyz"] for site in sites], dtype=np.float64)
    else:
        positions = np.array([site["abc"] for site in sites], dtype=np.float64) @ lattice
    pbc = structure["lattice"].get("pbc", [True, True, True])
    forces = record.get("force")
    stress = record.get("stress")
    magmom = record.get("magmom")
    return Frame(
        numbers=numbers,
        positions=positions,
        cell=lattice,
        pbc=np.asarray(pbc, dtype=bool),
        energy=float(record["uncorrected_total_energy"]),
        forces=None if forces is None else np.asarray(forces, dtype=np.float64),
        stress=None if stress is None else kbar_to_ev_a3(stress).reshape(3, 3),
        material_id=record.get("mp_id") or material_id or material_of_frame_id(frame_id),
        corrected_energy=float(record.get("corrected_total_energy", np.nan) or np.nan),
        magmoms=None if magmom is None else np.asarray(magmom, dtype=np.float64),
    )


def _open_text(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_mptrj_json(path: str | Path, limit: int | None = None) -> Iterator[Frame]:
    """Frames of an MPtrj JSON file (optionally gzipped), streamed when ijson is available."""
    path = Path(path)
    count = 0
    try:
        import ijson
    except ImportError:
        ijson = None
    with _open_text(path) as handle:
        if ijson is not None:
            materials = ijson.kvitems(handle, "", use_float=True)
        else:
            materials = json.load(handle).items()
        for material_id, frames in materials:
            for frame_id, record in frames.items():
                yield mptrj_frame(material_id, frame_id, record)
                count += 1
                if limit is not None and count >= limit:
                    return


def _material_from_info(info: dict, fallback: str) -> str:
    for key in ("mp_id", "material_id", "mptrj_traj_id", "traj_id", "uid", "wbm_id"):
        if key in info and info[key] not in (None, ""):
            value = str(info[key])
            return value.split("/")[0] if key == "uid" else value
    return fallback


def write_row(db, frame: Atoms, **keys) -> None:
    """Write a labelled frame to an ASE database; the per-atom energies (which ASE's SQLite rows do not keep)
    go into the row's data as ``energies``."""
    energies = frame.calc.results.get("energies") if frame.calc is not None else None
    db.write(frame, data={"energies": np.asarray(energies)} if energies is not None else {}, **keys)


def row_atoms(row) -> Atoms:
    """The labelled Atoms of a database row, per-atom energies (:func:`write_row`) included."""
    atoms = row.toatoms()
    energies = row.data.get("energies")
    if energies is not None and atoms.calc is not None:
        atoms.calc.results["energies"] = np.asarray(energies, dtype=np.float64)
    return atoms


def iter_ase_file(path: str | Path, limit: int | None = None, energy_key: str | None = None) -> Iterator[Frame]:
    """Frames of an extxyz (or any ASE-readable trajectory) file or an ASE database."""
    import ase.io

    path = Path(path)
    count = 0
    if path.suffix == ".db":
        from ase.db import connect

        for row in connect(str(path)).select():
            atoms = row_atoms(row)
            atoms.info.update(row.key_value_pairs)
            yield frame_from_atoms(atoms, _material_from_info(atoms.info, f"{path.stem}-{row.id}"), energy_key)
            count += 1
            if limit is not None and count >= limit:
                return
        return
    for index, atoms in enumerate(ase.io.iread(str(path), index=":")):
        key = energy_key or ("uncorrected_total_energy" if "uncorrected_total_energy" in atoms.info else None)
        yield frame_from_atoms(atoms, _material_from_info(atoms.info, f"{path.stem}-{index}"), key)
        count += 1
        if limit is not None and count >= limit:
            return


def iter_extxyz_zip(path: str | Path, limit: int | None = None) -> Iterator[Frame]:
    """Frames of Matbench Discovery's MPtrj extxyz zip (one member per material)."""
    import ase.io

    count = 0
    with zipfile.ZipFile(path) as archive:
        for name in sorted(archive.namelist()):
            if not name.endswith((".extxyz", ".xyz")):
                continue
            text = archive.read(name).decode()
            material = Path(name).stem
            for atoms in ase.io.iread(io.StringIO(text), index=":", format="extxyz"):
                key = "uncorrected_total_energy" if "uncorrected_total_energy" in atoms.info else None
                yield frame_from_atoms(atoms, _material_from_info(atoms.info, material), key)
                count += 1
                if limit is not None and count >= limit:
                    return


def iter_source(source: str | Path, limit: int | None = None) -> Iterator[Frame]:
    """Dispatch on the file type: MPtrj JSON(.gz), extxyz zip, ASE db, extxyz/other ASE formats."""
    path = Path(source)
    name = path.name.lower()
    if name.endswith((".json", ".json.gz")):
        yield from iter_mptrj_json(path, limit)
    elif name.endswith(".zip"):
        yield from iter_extxyz_zip(path, limit)
    else:
        yield from iter_ase_file(path, limit)


def resolve_source(source: str, data_dir: str | Path | None = None) -> Path:
    """A local path for a data source. 'mptrj' / 'mptrj-extxyz' name the published files: looked for in
    ``data_dir`` (``--data-dir``, default the cache's ``data/`` folder, :func:`geodite.data.downloads.cache_dir`),
    else downloaded there (clear error when offline)."""
    named = {"mptrj": (MPTRJ_JSON_URL, MPTRJ_JSON_NAME), "mptrj-extxyz": (MPTRJ_EXTXYZ_URL, MPTRJ_EXTXYZ_NAME)}
    if source in named:
        url, filename = named[source]
        folder = Path(data_dir) if data_dir else cache_dir() / "data"
        for candidate in (folder / filename, folder / (filename + ".gz")):
            if candidate.exists():
                return candidate
        return download_mptrj(url, folder / filename)
    path = Path(source).expanduser()
    if not path.exists() and data_dir is not None and (Path(data_dir) / source).exists():
        path = Path(data_dir) / source
    if not path.exists():
        raise FileNotFoundError(f"training data not found: {source}")
    return path


def download_mptrj(url: str = MPTRJ_JSON_URL, destination: str | Path | None = None) -> Path:
    """Download MPtrj (11 GB JSON) to ``destination`` (default: the cache's ``data/`` folder,
    :func:`geodite.data.downloads.cache_dir`); a one-line :class:`~geodite.data.downloads.DownloadError` offline.
    Checksum verified only if known (MPTRJ_JSON_SHA256 is None: not published in a form we could verify)."""
    destination = Path(destination or cache_dir() / "data" / MPTRJ_JSON_NAME)
    known = MPTRJ_JSON_SHA256 is not None and url == MPTRJ_JSON_URL
    return download_file(url, destination, timeout=120.0,
                         checksum=("sha256", MPTRJ_JSON_SHA256) if known else None,
                         manual=f"Download {destination.name} elsewhere (figshare article 23713842) and pass its "
                         "folder with --data-dir.")


def convert_to_store(sources: list[str | Path], store_dir: str | Path, limit: int | None = None,
            progress: Callable[[int], None] | None = None, overwrite: bool = False) -> FrameStore:
    """Convert sources (streamed frame by frame) into one store at ``store_dir``."""
    count = 0
    with FrameStoreWriter(store_dir, source=";".join(str(s) for s in sources), overwrite=overwrite) as writer:
        for source in sources:
            for frame in iter_source(source):
                writer.add(frame)
                count += 1
                if progress and count % 10000 == 0:
                    progress(count)
                if limit is not None and count >= limit:
                    break
    return FrameStore(store_dir)


def open_store(sources: list[str], store_dir: str | Path, data_dir: str | Path | None = None,
               convert: bool = True, barrier: Callable[[], None] | None = None) -> FrameStore:
    """A store for ``sources``: a single store directory is used as is; otherwise the sources are converted
    once into ``store_dir`` (reused if it exists with the same source list). With ``barrier`` (distributed),
    only the converting rank writes and the others wait."""
    if len(sources) == 1 and (Path(sources[0]) / "meta.json").exists():
        return FrameStore(sources[0])
    store_dir = Path(store_dir)
    if convert:
        paths = [resolve_source(s, data_dir) for s in sources]
        key = ";".join(str(p) for p in paths)
        meta = store_dir / "meta.json"
        if not (meta.exists() and json.loads(meta.read_text()).get("source") == key):
            convert_to_store(paths, store_dir, overwrite=True)
    if barrier is not None:
        barrier()
    return FrameStore(store_dir)
