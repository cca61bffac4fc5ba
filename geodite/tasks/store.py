"""Crash-safe, append-only results store: one JSON line per finished item.

Layout: ``<dir>/rows.jsonl`` (one JSON object per item, each with ``key`` and
``status`` ∈ {"ok", "failed"}) and ``<dir>/meta.json`` (task, model, protocol config).

Every :meth:`ResultStore.append` writes one complete line, flushes and ``fsync``s, so
a process killed with SIGKILL loses at most the line being written; on reopening, a
trailing partial line is cut off and everything before it is kept. If an item appears
more than once (a retried failure), the last line wins.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


class ConfigMismatchError(RuntimeError):
    """The store was written with a different protocol configuration."""


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


class ResultStore:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.rows_path = self.dir / "rows.jsonl"
        self.meta_path = self.dir / "meta.json"
        self._fh = None

    # ---------------------------------------------------------------- meta
    def check_or_write_meta(self, meta: dict, config: dict, fresh: bool = False) -> None:
        """Record ``meta`` + the config hash; refuse to mix rows from another config."""
        self.dir.mkdir(parents=True, exist_ok=True)
        h = config_hash(config)
        if fresh:
            self.rows_path.unlink(missing_ok=True)
        elif self.meta_path.exists() and self.rows_path.exists():
            old = json.loads(self.meta_path.read_text())
            if old.get("config_hash") != h:
                raise ConfigMismatchError(
                    f"{self.dir} holds results of a different configuration "
                    f"(stored {old.get('config')}, now {jsonable(config)}); "
                    "use --fresh to discard them or --results-dir to write elsewhere"
                )
        body = {**meta, "config": config, "config_hash": h}
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(jsonable(body), indent=1, default=_default))
        os.replace(tmp, self.meta_path)

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

    def read_rows(self) -> dict[str, dict]:
        """key → row (last occurrence wins); malformed lines are skipped."""
        rows: dict[str, dict] = {}
        if not self.rows_path.exists():
            return rows
        with open(self.rows_path, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # partial last line
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                rows[row["key"]] = row
        return rows

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
