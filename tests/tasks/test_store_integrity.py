"""A damaged results store is refused (no readable meta.json) or repaired (bad lines set aside), never
reused blindly or left to stop every rerun with a traceback."""

from __future__ import annotations

import json

import pytest

from geodite.tasks.store import ResultStore, StoreMetaError

GOOD_A = b'{"key": "a", "status": "ok", "x": 1.0}\n'
GOOD_B = b'{"key": "b", "status": "failed", "error": "boom"}\n'


def _store_with_rows(tmp_path) -> ResultStore:
    store = ResultStore(tmp_path / "store")
    store.check_or_write_meta({"task": "t"}, {"protocol": "mbd"})
    with store:
        store.append({"key": "a", "status": "ok", "value": 1.0})
    return store


@pytest.mark.parametrize("damage", ["missing", "truncated", "not an object", "not UTF-8", "a folder"])
def test_rows_without_a_readable_meta_are_refused_with_the_way_out(tmp_path, damage):
    store = _store_with_rows(tmp_path)
    text = store.meta_path.read_bytes()
    store.meta_path.unlink()
    if damage == "truncated":
        store.meta_path.write_bytes(text[: len(text) // 2])
    elif damage == "not an object":
        store.meta_path.write_text("[1, 2]")
    elif damage == "not UTF-8":
        store.meta_path.write_bytes(b"\xff\xfe{")
    elif damage == "a folder":
        store.meta_path.mkdir()
    with pytest.raises(StoreMetaError) as refused:
        store.check_or_write_meta({"task": "t"}, {"protocol": "arena"})  # another protocol: must not reuse
    message = str(refused.value)
    assert str(store.dir) in message and "--fresh" in message and "meta.json" in message
    assert "\n" not in message
    assert set(store.read_rows()) == {"a"}  # refusing leaves the rows alone


def test_a_new_folder_or_one_without_rows_takes_any_meta(tmp_path):
    store = ResultStore(tmp_path / "new")
    store.check_or_write_meta({"task": "t"}, {"protocol": "mbd"})  # brand-new folder
    store.meta_path.write_text('{"trunc')  # unreadable meta, but no rows to misattribute
    store.check_or_write_meta({"task": "t"}, {"protocol": "arena"})
    assert json.loads(store.meta_path.read_text())["config"] == {"protocol": "arena"}


def test_discard_clears_rows_meta_and_set_aside_lines_but_not_the_lock(tmp_path):
    store = _store_with_rows(tmp_path)
    store.corrupt_path.write_bytes(b"junk\n")
    store.lock_path.write_text("")
    store.discard()
    assert sorted(p.name for p in store.dir.iterdir()) == ["run.lock"]
    store.check_or_write_meta({"task": "t"}, {"protocol": "arena"})  # a fresh start is accepted


def test_bad_lines_are_reported_set_aside_and_skipped(tmp_path):
    store = ResultStore(tmp_path)
    bad = [b'{"not": "a row"}\n', b"[1, 2]\n", b'{"key": "c", "status": "ok", "name": "\xff\xfe"}\n',
           b"{oops\n", b'{"key": 3, "status": "ok"}\n']
    store.rows_path.write_bytes(GOOD_A + bad[0] + bad[1] + GOOD_B + bad[2] + bad[3] + bad[4] + b'{"key": "d", "st')
    assert set(store.read_rows()) == {"a", "b"}  # reading alone skips them, without raising

    report = store.set_aside_bad_lines()
    assert report.startswith(f"{store.rows_path}: line 2: not a result row")
    for fragment in ("line 3:", "line 5: not UTF-8", "line 6: not JSON", "line 7:", store.corrupt_path.name):
        assert fragment in report
    assert "\n" not in report
    assert store.rows_path.read_bytes() == GOOD_A + GOOD_B  # the partial last line is cut too
    assert store.corrupt_path.read_bytes() == b"".join(bad)  # bytes as they were, for a look by hand
    assert set(store.read_rows()) == {"a", "b"}
    assert store.set_aside_bad_lines() is None  # nothing left to set aside


def test_many_bad_lines_make_one_short_report(tmp_path):
    store = ResultStore(tmp_path)
    store.rows_path.write_bytes(b"{}\n" * 40 + GOOD_A)
    report = store.set_aside_bad_lines(shown=3)
    assert "line 3:" in report and "line 4:" not in report and "and 37 more" in report
    assert store.corrupt_path.read_bytes().count(b"\n") == 40
