"""Crash-safe, append-only results store: one JSON line per finished item.

Layout: ``<dir>/rows.jsonl`` (one JSON object per item, each with ``key`` and
``status`` ∈ {"ok", "failed", "unsupported"}), ``<dir>/meta.json`` (task, model, protocol config),
``<dir>/run.lock`` (the writer's lock, see :mod:`geodite.tasks.lock`) and, after damage,
``<dir>/rows.jsonl.corrupt`` (lines set aside).

Every :meth:`ResultStore.append` writes one complete line, flushes and ``fsync``s, so
a process killed with SIGKILL loses at most the line being written; on reopening, a
trailing partial line is cut off and everything before it is kept. If an item appears
more than once (a retried failure), the last line wins. Rows without a readable
``meta.json`` are never reused: nothing would say which protocol made them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


class StoreError(RuntimeError):
    """A results store that cannot be used as it is (the message says what to do)."""


class ConfigMismatchError(StoreError):
    """The store was written with a different protocol configuration."""


class StoreMetaError(StoreError):
    """The store holds rows but its ``meta.json`` is missing or unreadable."""


def _default(obj: Any):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def jsonable(obj: Any) -> Any:
    """Recursively replace NaN/inf by None and numpy scalars by Python ones (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def config_hash(config: dict) -> str:
    blob = json.dumps(jsonable(config), sort_keys=True, default=_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _shown(value: Any, width: int = 40) -> str:
    """A protocol value in a one-line message (long ones cut, e.g. a sha256 to its first 12 digits)."""
    if value is None:
        return "not recorded"
    text = value if isinstance(value, str) else json.dumps(value)
    if isinstance(value, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12] + "…"
    return text if len(text) <= width else text[: width - 1] + "…"


def config_changes(stored: dict, config: dict, shown: int = 4) -> str:
    """What differs between a stored protocol and ``config``, on one line: "dtype float32 → float64; ...";
    an entry missing on either side is "not recorded"."""
    now = json.loads(json.dumps(jsonable(config), default=_default))
    keys = [k for k in sorted(set(stored) | set(now)) if stored.get(k) != now.get(k)]
    listed = "; ".join(f"{k} {_shown(stored.get(k))} → {_shown(now.get(k))}" for k in keys[:shown])
    return listed + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


#: the fields every row has besides its results (an "ok" row with nothing else holds no result)
BOOKKEEPING = frozenset({"key", "status", "item_wall_s"})


def _parse_line(line: bytes) -> dict | str:
    """A complete store line as its row (a JSON object with str ``key`` and ``status``), or what is wrong."""
    try:
        row = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8"
    except json.JSONDecodeError:
        return "not JSON"
    if not isinstance(row, dict) or not isinstance(row.get("key"), str) or not isinstance(row.get("status"), str):
        return 'not a result row (no "key" and "status")'
    if row["status"] == "ok" and not set(row) - BOOKKEEPING:
        return 'an "ok" row without results'
    return row


class ResultStore:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.rows_path = self.dir / "rows.jsonl"
        self.meta_path = self.dir / "meta.json"
        self.corrupt_path = self.dir / "rows.jsonl.corrupt"
        self.lock_path = self.dir / "run.lock"
        self._fh = None

    def discard(self) -> None:
        """Delete the stored rows, metadata and set-aside lines (not the lock file: call this holding it)."""
        for path in (self.rows_path, self.meta_path, self.corrupt_path):
            path.unlink(missing_ok=True)

    # ---------------------------------------------------------------- meta
    def _read_meta(self) -> dict:
        """The stored metadata; :class:`StoreMetaError` when it is missing or unreadable."""
        try:
            meta = json.loads(self.meta_path.read_bytes().decode("utf-8"))
            problem = None if isinstance(meta, dict) and "config_hash" in meta else "holds no configuration"
        except FileNotFoundError:
            problem = "is missing"
        except OSError as exc:
            problem = f"cannot be read ({exc.strerror})"
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            problem = f"is unreadable ({exc})"
        if problem:
            raise StoreMetaError(
                f"{self.dir} holds results but its meta.json {problem}, so nothing says which protocol made them; "
                "start fresh with --fresh (discards them) or use --results-dir to write elsewhere"
            )
        return meta

    def check_or_write_meta(self, meta: dict, config: dict) -> str | None:
        """Record ``meta`` + the config hash; refuse rows of another config or of an unknown one (no readable
        ``meta.json``). A store without rows takes any config, and so does one of failed items only (they are
        discarded: a run whose every item failed, e.g. under a bad option, must not block the corrected one).
        Returns a one-line note when rows were discarded, else None."""
        self.dir.mkdir(parents=True, exist_ok=True)
        h = config_hash(config)
        note = None
        if self.rows_path.exists() and self.rows_path.stat().st_size:
            old = self._read_meta()
            if old["config_hash"] != h and not self.holds_results():
                n_failed = len(self.read_rows())
                self.discard()
                note = (f"{self.dir}: discarded {n_failed} failed item(s) of another configuration "
                        f"({config_changes(old.get('config') or {}, config)}); no results were lost")
            elif old["config_hash"] != h:
                changes = config_changes(old.get("config") or {}, config)
                if old.get("model", meta.get("model")) != meta.get("model"):  # --fresh would destroy another's rows
                    raise ConfigMismatchError(
                        f"{self.dir} holds results of a different configuration (stored → now: {changes}) made "
                        f"by --model {old['model']}; they are that model's: use --results-dir to write elsewhere")
                raise ConfigMismatchError(
                    f"{self.dir} holds results of a different configuration (stored → now: {changes}); "
                    "use --fresh to discard them or --results-dir to write elsewhere"
                )
        body = {**meta, "config": config, "config_hash": h}
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(jsonable(body), indent=1, default=_default))
        os.replace(tmp, self.meta_path)
        return note

    # ---------------------------------------------------------------- rows
    def _repair_tail(self) -> None:
        """Cut a trailing partial line (left by a kill mid-write)."""
        if not self.rows_path.exists():
            return
        with open(self.rows_path, "rb+") as fh:
            data = fh.read()
            if not data or data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1  # 0 if no complete line
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())

    def _lines(self) -> Iterator[bytes]:
        """The complete lines of the rows file (a partial last line is left out)."""
        if not self.rows_path.exists():
            return
        with open(self.rows_path, "rb") as fh:
            for line in fh:
                if line.endswith(b"\n"):
                    yield line

    def set_aside_bad_lines(self, shown: int = 5) -> str | None:
        """Move complete lines that are not rows (not UTF-8, not JSON, no ``key``/``status``) from the rows file
        to ``rows.jsonl.corrupt`` (appended, bytes as they were), so their items are recomputed; a partial last
        line is cut. Returns the one-line report naming the file and the lines, or None when all were good."""
        self._repair_tail()
        parsed = ((number, _parse_line(line)) for number, line in enumerate(self._lines(), 1))
        bad = [(number, problem) for number, problem in parsed if isinstance(problem, str)]
        if not bad:
            return None
        tmp = self.rows_path.with_name(f".{self.rows_path.name}.tmp")
        with open(tmp, "wb") as good, open(self.corrupt_path, "ab") as corrupt:
            for line in self._lines():
                (corrupt if isinstance(_parse_line(line), str) else good).write(line)
            for fh in (corrupt, good):
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, self.rows_path)
        listed = ", ".join(f"line {number}: {problem}" for number, problem in bad[:shown])
        more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
        return (f"{self.rows_path}: {listed}{more}; set aside in {self.corrupt_path.name}, "
                "their items will be computed again")

    def read_rows(self) -> dict[str, dict]:
        """key → row (last occurrence wins); lines that are not rows are skipped."""
        rows: dict[str, dict] = {}
        for line in self._lines():
            row = _parse_line(line)
            if isinstance(row, dict):
                rows[row["key"]] = row
        return rows

    def holds_results(self) -> bool:
        """Whether any stored row is a result (status "ok"); a store of failed items only holds none."""
        return any(row.get("status") == "ok" for row in self.read_rows().values())

    def done_keys(self, retry_failed: bool = False) -> set[str]:
        rows = self.read_rows()
        return {k for k, r in rows.items() if not (retry_failed and r.get("status") != "ok")}

    def open(self) -> ResultStore:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self._fh = open(self.rows_path, "a", encoding="utf-8")  # noqa: SIM115
        return self

    def append(self, row: dict) -> None:
        if self._fh is None:
            self.open()
        line = json.dumps(jsonable(row), default=_default, allow_nan=False)
        self._fh.write(line + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> ResultStore:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
