from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geodite.data import downloads
from geodite.data.downloads import DATA_FILES, DataUnavailableError, fetch


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty cache."""
    monkeypatch.setenv("GEODITE_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path


def test_url_table_has_checksums():
    for f in DATA_FILES.values():
        assert f.url.startswith("https://figshare.com/ndownloader/files/")
        assert f.md5 and len(f.md5) == 32
    assert {"wbm_summary", "wbm_initial_structures", "wbm_computed_structure_entries", "mp_elemental_ref_entries"} <= set(
        DATA_FILES
    )


def test_offline_error_is_clear(offline):
    with pytest.raises(DataUnavailableError) as err:
        fetch("wbm_summary")
    msg = str(err.value)
    assert "https://figshare.com/ndownloader/files/64706751" in msg
    assert "offline" in msg and "--data-dir" in msg and "2023-12-13-wbm-summary.csv.gz" in msg
    assert not list((offline / "cache").rglob("*.csv.gz"))  # nothing half-written


def test_no_download_error(offline):
    with pytest.raises(DataUnavailableError, match="not found locally"):
        fetch("wbm_summary", download=False)


class _Response:
    """What urlopen returns, serving ``payload``."""

    def __init__(self, payload: bytes):
        self.payload = payload

    def read(self, n=-1):
        out, self.payload = self.payload, b""
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_local_data_dir_and_checksum(offline, monkeypatch):
    refs = downloads.Path(__file__).resolve().parents[2] / "geodite" / "data" / "files"
    # the shipped MP reference file is the figshare file: its md5 matches the table
    assert downloads.file_digest(refs / "2023-02-07-mp-elemental-reference-entries.json.gz", "md5") == DATA_FILES[
        "mp_elemental_ref_entries"
    ].md5
    assert fetch("mp_elemental_ref_entries", data_dir=refs).name.endswith("reference-entries.json.gz")

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Response(gzip.compress(b"not it")))
    with pytest.raises(DataUnavailableError, match="Checksum mismatch"):
        fetch("wbm_summary")


def test_cli_full_mode_offline(offline):
    from geodite.cli.bench import bench_app

    res = CliRunner().invoke(
        bench_app, ["discovery", "--model", "emt", "--mode", "full", "--json", "--results-dir", str(offline / "r")]
    )
    assert res.exit_code == 2
    assert "figshare" in res.output and "offline" in res.output


def test_one_cache_variable_for_data_and_checkpoints(tmp_path, monkeypatch):
    """$GEODITE_CACHE_DIR is where both benchmark data and the Geodite-MP checkpoint are found; it wins over
    the deprecated $GEODITE_CACHE."""
    import shutil

    from geodite.checkpoints import resolve_model_path
    from tests.conftest import DATA

    cache = tmp_path / "cache"
    monkeypatch.setenv("GEODITE_CACHE_DIR", str(cache))
    monkeypatch.setenv("GEODITE_CACHE", str(tmp_path / "old"))
    wbm = DATA_FILES["wbm_summary"]
    (cache / wbm.path).parent.mkdir(parents=True)
    (cache / wbm.path).write_bytes(b"cached")
    shutil.copy(DATA / "geodite_small_checkpoint.pt", cache / "Geodite-MP.ckpt")
    assert fetch("wbm_summary", download=False) == cache / wbm.path
    assert resolve_model_path("geodite-mp") == cache / "Geodite-MP.ckpt"  # found, so nothing downloaded


def test_deprecated_cache_variable_still_works(tmp_path, monkeypatch):
    monkeypatch.delenv("GEODITE_CACHE_DIR", raising=False)
    monkeypatch.setenv("GEODITE_CACHE", str(tmp_path))
    with pytest.warns(FutureWarning, match="GEODITE_CACHE_DIR"):
        assert downloads.cache_dir() == tmp_path
    monkeypatch.delenv("GEODITE_CACHE")
    assert downloads.cache_dir() == Path.home() / ".cache" / "geodite"


def test_one_download_helper_is_atomic_and_checks_the_digest(offline, monkeypatch):
    """downloads.download_file: the file appears only complete and matching; a mismatch or an offline machine leaves
    nothing behind and says so in one line."""
    import hashlib

    target = offline / "cache" / "sub" / "file.bin"
    with pytest.raises(downloads.DownloadError, match="offline") as error:
        downloads.download_file("https://example.org/file.bin", target, manual="Put it there by hand.")
    assert "\n" not in str(error.value) and str(error.value).endswith("Put it there by hand.")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Response(b"payload"))
    with pytest.raises(downloads.DownloadError, match="Checksum mismatch"):
        downloads.download_file("https://example.org/file.bin", target, checksum=("md5", "0" * 32))
    assert not list(target.parent.iterdir())
    good = ("sha256", hashlib.sha256(b"payload").hexdigest())
    assert downloads.download_file("https://example.org/file.bin", target, checksum=good) == target
    assert target.read_bytes() == b"payload" and [p.name for p in target.parent.iterdir()] == ["file.bin"]
    assert downloads.file_digest(target) == good[1]
    assert downloads.file_digest(target, "md5") == hashlib.md5(b"payload").hexdigest()


def test_mptrj_lives_in_the_cache_variable_s_folder(offline, monkeypatch):
    """MPtrj is looked for and downloaded under $GEODITE_CACHE_DIR/data (main: always ~/.cache/geodite/data)."""
    from geodite.data import mptrj

    cached = offline / "cache" / "data" / mptrj.MPTRJ_JSON_NAME
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Response(b"{}"))
    assert mptrj.download_mptrj() == cached and cached.read_bytes() == b"{}"
    assert mptrj.resolve_source("mptrj") == cached
