"""Downloads: the one cache, the one download and file-digest helpers, and the benchmark data files' table.

* :func:`cache_dir`: where every download lives (``$GEODITE_CACHE_DIR``, else ``~/.cache/geodite``): benchmark
  data, the Geodite-MP checkpoint, MPtrj, built kernels;
* :func:`download_file`: a URL to a file, atomically (a temporary file beside it, moved into place only when
  complete and, if a checksum is given, matching), one-line :class:`DownloadError` offline;
* :func:`file_digest`: a file's hex digest, sha256 by default (checkpoints, provenance), md5 where a data
  source publishes md5 (Matbench Discovery's figshare files).

Benchmark data files (a URL table, a local cache, checksums and a clear offline error):

The full Matbench Discovery (MBD) data live on figshare. The table below copies the
figshare file ids and md5 checksums from MBD's own registry
(``janosh/matbench-discovery``, ``matbench_discovery/data-files.yml``). We do not import
``matbench_discovery``: its 1.3.1 release reads (and so downloads) the WBM summary table
at import time (``matbench_discovery/data.py``: ``df_wbm = pd.read_csv(DataFiles.wbm_summary.path)``)
and asks on a TTY whether to download.

Lookup order for a file ``key``:
1. ``data_dir`` given by the caller (``--data-dir``): ``data_dir/<relative path>`` or
   ``data_dir/<file name>``;
2. the cache (:func:`cache_dir`: ``$GEODITE_CACHE_DIR`` or ``~/.cache/geodite``, shared with downloaded
   checkpoints), same two layouts;
3. download to the cache (only when ``download=True``), verify md5, move into place.
If none works, :class:`DataUnavailableError` says which file, where it looked, and how
to provide it by hand.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

FIGSHARE = "https://figshare.com/ndownloader/files/{}"


@dataclass(frozen=True)
class DataFile:
    key: str
    path: str  # relative path inside the cache / data dir (MBD's layout)
    url: str
    md5: str | None
    description: str

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _fs(file_id: int) -> str:
    return FIGSHARE.format(file_id)


DATA_FILES: dict[str, DataFile] = {
    f.key: f
    for f in [
        DataFile(
            "wbm_summary",
            "wbm/2023-12-13-wbm-summary.csv.gz",
            _fs(64706751),
            "1555268d3aa59d20262cb9d01ce0994b",
            "WBM summary: DFT formation energies, hull distances (MP2020-corrected, vs MP PPD), "
            "unique_prototype flag for 256,963 materials",
        ),
        DataFile(
            "wbm_initial_structures",
            "wbm/2022-10-19-wbm-init-structs.jsonl.gz",
            _fs(53161835),
            "b809f101dd42a745ec2baabe7eb16f11",
            "Unrelaxed WBM structures (pymatgen Structure, JSON lines)",
        ),
        DataFile(
            "wbm_computed_structure_entries",
            "wbm/2022-10-19-wbm-computed-structure-entries.jsonl.gz",
            _fs(53161832),
            "655b7a9c368e136dd8747f1ef8002e7a",
            "WBM DFT-relaxed ComputedStructureEntries (energies, run parameters for MP2020)",
        ),
        DataFile(
            "wbm_initial_atoms",
            "wbm/2024-08-04-wbm-initial-atoms.extxyz.zip",
            _fs(48169597),
            "2a292211ca6acb30ed8416178d644098",
            "Unrelaxed WBM structures as ASE extxyz (zip)",
        ),
        DataFile(
            "wbm_relaxed_atoms",
            "wbm/2024-08-04-wbm-relaxed-atoms.extxyz.zip",
            _fs(48169600),
            "4726643ac0dfbab69a4284454c891e68",
            "WBM DFT-relaxed structures as ASE extxyz (zip)",
        ),
        DataFile(
            "mp_elemental_ref_entries",
            "mp/2023-02-07-mp-elemental-reference-entries.json.gz",
            _fs(40387775),
            "6e93b6f38d6e27d6c811d3cafb23a070",
            "Lowest-energy MP ComputedEntry per element (formation-energy references)",
        ),
        DataFile(
            "mp_patched_phase_diagram",
            "mp/2023-02-07-ppd-mp.pkl.gz",
            _fs(48241624),
            "60d19d691fa1d338aa496a40a9641bef",
            "PatchedPhaseDiagram of all MP entries",
        ),
        DataFile(
            "phonondb_pbe_103_structures",
            "phonons/2024-11-09-phononDB-PBE-103-structures.extxyz",
            _fs(52179965),
            "0b149802835e260aa3ab0c7e3c88625b",
            "103 phononDB PBE unit cells (A. Togo) with fc2_supercell, fc3_supercell and q-point mesh in atoms.info",
        ),
        DataFile(
            "phonondb_pbe_103_kappa_no_nac",
            "phonons/2024-11-09-kappas-phononDB-PBE-noNAC.json.gz",
            _fs(59988539),
            "70c7a8b0df4cbb4d98f12aea5f61aeee",
            "phono3py PBE thermal conductivities (no NAC) of the 103 phononDB materials, mode-resolved",
        ),
    ]
}


class DataUnavailableError(RuntimeError):
    """A benchmark data file is neither local nor downloadable (e.g. offline)."""


#: the one environment variable naming the cache of every download (benchmark data, Geodite-MP weights)
CACHE_ENV = "GEODITE_CACHE_DIR"
#: its former name, read for checkpoints only until 2026-11; still honoured when CACHE_ENV is unset
DEPRECATED_CACHE_ENV = "GEODITE_CACHE"


def cache_dir() -> Path:
    """Where downloaded files live: ``$GEODITE_CACHE_DIR``, else ``~/.cache/geodite``.

    The deprecated ``$GEODITE_CACHE`` is used (with a FutureWarning) when only it is set."""
    if value := os.environ.get(CACHE_ENV):
        return Path(value)
    if value := os.environ.get(DEPRECATED_CACHE_ENV):
        warnings.warn(f"${DEPRECATED_CACHE_ENV} is deprecated; set ${CACHE_ENV} instead (one cache for data and "
                      "checkpoints)", FutureWarning, stacklevel=2)
        return Path(value)
    return Path.home() / ".cache" / "geodite"


class DownloadError(RuntimeError):
    """A file that could not be downloaded (offline, HTTP error) or whose checksum does not match."""


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of the file at ``path`` (any :mod:`hashlib` algorithm: "sha256", "md5", ...)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def download_file(url: str, destination: str | Path, *, timeout: float = 60.0,
                  checksum: tuple[str, str] | None = None, manual: str = "") -> Path:
    """Download ``url`` to ``destination`` (folders created) and return it.

    The bytes go to a temporary file beside ``destination``, moved into place only once complete and, with
    ``checksum`` = (algorithm, hex digest), matching it: a failed, killed or corrupt download leaves nothing at
    ``destination``. Raises :class:`DownloadError` with one line naming the URL, the reason and ``manual``
    (how to provide the file by hand)."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part",
                                      delete=False)
    try:
        with tmp, urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - https URLs of our tables
            shutil.copyfileobj(response, tmp)
        if checksum is not None and (got := file_digest(tmp.name, checksum[0])) != checksum[1]:
            raise DownloadError(f"Checksum mismatch for {url}: {checksum[0]} {got} != expected {checksum[1]}. "
                                f"{manual}".strip())
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        Path(tmp.name).unlink(missing_ok=True)
        raise DownloadError(f"could not download {url} ({error}); is this machine offline? {manual}".strip()) from error
    except DownloadError:
        Path(tmp.name).unlink(missing_ok=True)
        raise
    os.replace(tmp.name, destination)
    return destination


def _candidates(f: DataFile, data_dir: str | Path | None) -> list[Path]:
    roots = ([Path(data_dir)] if data_dir else []) + [cache_dir()]
    return [p for root in roots for p in (root / f.path, root / f.filename)]


def local_path(key: str, data_dir: str | Path | None = None) -> Path | None:
    """The local copy of ``key`` if one exists (no download, no checksum)."""
    f = DATA_FILES[key]
    return next((p for p in _candidates(f, data_dir) if p.is_file()), None)


def fetch(
    key: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    timeout: float = 30.0,
    verify: bool = True,
) -> Path:
    """Path to data file ``key``: local copy, else cached, else downloaded (md5-checked)."""
    if key not in DATA_FILES:
        raise KeyError(f"unknown data file {key!r}; known: {sorted(DATA_FILES)}")
    f = DATA_FILES[key]
    if (found := local_path(key, data_dir)) is not None:
        return found
    where = ", ".join(str(p) for p in _candidates(f, data_dir))
    manual = (
        f"Download it by hand from {f.url} (md5 {f.md5}) and put it at one of: {where}; "
        f"or pass --data-dir DIR containing {f.path} or {f.filename}."
    )
    if not download:
        raise DataUnavailableError(f"Data file {key!r} ({f.filename}) not found locally. {manual}")
    try:
        return download_file(f.url, cache_dir() / f.path, timeout=timeout,
                             checksum=("md5", f.md5) if verify and f.md5 else None, manual=manual)
    except DownloadError as error:
        raise DataUnavailableError(f"Data file {key!r}: {error}") from error


def have_all(keys: list[str], data_dir: str | Path | None = None) -> bool:
    return all(local_path(k, data_dir) is not None for k in keys)
