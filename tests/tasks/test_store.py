from __future__ import annotations

import json

import pytest

from geodite.tasks.store import ConfigMismatchError, ResultStore, jsonable


def test_append_and_read_last_wins(tmp_path):
    with ResultStore(tmp_path) as store:
        store.append({"key": "a", "status": "failed", "x": float("nan")})
        store.append({"key": "b", "status": "ok", "x": 1.0})
        store.append({"key": "a", "status": "ok", "x": 2.0})
    rows = ResultStore(tmp_path).read_rows()
    assert rows["a"] == {"key": "a", "status": "ok", "x": 2.0}
    assert rows["b"]["x"] == 1.0
    # every line is strict JSON (NaN written as null)
    for line in (tmp_path / "rows.jsonl").read_text().splitlines():
        json.loads(line)


def test_partial_trailing_line_is_cut(tmp_path):
    store = ResultStore(tmp_path)
    with store:
        store.append({"key": "a", "status": "ok", "value": 1.0})
    with open(store.rows_path, "a") as fh:
        fh.write('{"key": "b", "stat')  # a kill mid-write
    assert set(store.read_rows()) == {"a"}
    with store:
        store.append({"key": "c", "status": "ok", "value": 3.0})
    assert set(store.read_rows()) == {"a", "c"}
    assert store.rows_path.read_text().count("\n") == 2


def test_done_keys_retry_failed(tmp_path):
    with ResultStore(tmp_path) as store:
        store.append({"key": "a", "status": "ok", "value": 1.0})
        store.append({"key": "b", "status": "failed", "error": "boom"})
    store = ResultStore(tmp_path)
    assert store.done_keys() == {"a", "b"}
    assert store.done_keys(retry_failed=True) == {"a"}


def test_config_mismatch_and_fresh(tmp_path):
    store = ResultStore(tmp_path)
    store.check_or_write_meta({"task": "t"}, {"fmax": 0.05})
    with store:
        store.append({"key": "a", "status": "ok", "value": 1.0})
    store.check_or_write_meta({"task": "t"}, {"fmax": 0.05})  # same config: fine
    with pytest.raises(ConfigMismatchError):
        store.check_or_write_meta({"task": "t"}, {"fmax": 0.1})
    store.discard()
    store.check_or_write_meta({"task": "t"}, {"fmax": 0.1})
    assert store.read_rows() == {}


def test_a_refusal_never_offers_to_discard_another_models_results(tmp_path):
    """Rows made by another --model under the same label (same weights, another dtype) are that model's:
    the one-line refusal names it and says where to write instead, not --fresh."""
    store = ResultStore(tmp_path)
    store.check_or_write_meta({"task": "t", "model": "runs/a/model.pt"}, {"dtype": "float32"})
    with store:
        store.append({"key": "a", "status": "ok", "e": 1.0})
    with pytest.raises(ConfigMismatchError) as refused:
        store.check_or_write_meta({"task": "t", "model": "runs/b/model.pt"}, {"dtype": "float64"})
    message = str(refused.value)
    assert "--model runs/a/model.pt" in message and "--results-dir" in message and "--fresh" not in message
    assert "dtype float32 → float64" in message and "\n" not in message


def test_jsonable():
    import numpy as np

    assert jsonable({"a": np.float64("nan"), "b": [np.int64(3), float("inf")]}) == {"a": None, "b": [3, None]}
