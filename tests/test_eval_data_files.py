"""`geodite eval` on damaged, empty or odd data paths, and results keyed by the data file's contents."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from geodite.cli.main import app
from geodite.evaluate import data_key
from geodite.registry import model_label
from tests.conftest import DATA

runner = CliRunner()
CASES = DATA / "geodite_small_cases.extxyz"  # 8 frames with the small model's own references
MODEL = str(DATA / "geodite_small_checkpoint.pt")
LABEL = model_label(MODEL)


def evaluate(data, results_dir, *models: str):
    args = ["eval", "--data", str(data), "--results-dir", str(results_dir), "--json"]
    for model in models or (MODEL,):
        args += ["--model", model]
    return runner.invoke(app, args)


def flat(output: str) -> str:
    """Console output with its line wrapping undone."""
    return " ".join(output.split())


def summaries(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_a_file_cut_short_keeps_its_good_frames(tmp_path):
    """Cut in the last frame: the 7 whole frames are evaluated (at round-off), the 8th is one failed row that
    names the file and the frame. Before, a raw traceback and nothing evaluated."""
    text = CASES.read_bytes()
    cut = tmp_path / "cut.extxyz"
    cut.write_bytes(text[: len(text) - 300])
    result = evaluate(cut, tmp_path)
    assert result.exit_code == 0, result.output
    (summary,) = summaries(result)
    assert summary["n_structures"] == 8 and summary["n_failed"] == 1 and summary["n_unreadable"] == 1
    assert summary["max_abs_energy_error"] < 1e-6 and summary["max_abs_force_error"] < 1e-6
    assert "cut.extxyz frame 7:" in flat(result.output)
    rows = (tmp_path / "eval" / LABEL / f"{data_key(cut)[0]}.csv").read_text().splitlines()
    assert len(rows) == 9 and "cut.extxyz frame 7" in rows[-1]


def test_a_bad_frame_in_the_middle_does_not_drop_the_frames_around_it(tmp_path):
    lines = CASES.read_text().splitlines(keepends=True)
    first_atoms = 2 + int(lines[0])  # frame 0's lines; frame 1 starts here
    bad_line = first_atoms + 2  # frame 1's first atom
    lines[bad_line] = re.sub(r"^(\S+\s+)\S+", r"\1abc", lines[bad_line])
    bad = tmp_path / "bad.extxyz"
    bad.write_text("".join(lines))
    result = evaluate(bad, tmp_path)
    assert result.exit_code == 0, result.output
    (summary,) = summaries(result)
    assert summary["n_structures"] == 8 and summary["n_failed"] == 1
    assert summary["max_abs_force_error"] < 1e-6
    assert "bad.extxyz frame 1: ValueError" in flat(result.output)


@pytest.mark.parametrize("kind,message", [("empty", "is empty"), ("directory", "is a directory"),
                                          ("missing", "no such data file"), ("garbage", "cannot read")])
def test_nothing_to_evaluate_is_one_line_and_exit_2(tmp_path, kind, message):
    path = tmp_path / "frames.extxyz"
    if kind == "empty":
        path.write_text("")
    elif kind == "directory":
        path.mkdir()
    elif kind == "garbage":
        path.write_text("this is not\na structure file\n")
    result = evaluate(path, tmp_path / "results")
    assert result.exit_code == 2, result.output
    assert message in flat(result.output) and "Traceback" not in result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["error"]


def test_files_of_one_name_in_two_folders_are_kept_apart(tmp_path):
    """Before, a second frames.extxyz overwrote the first one's table, and the comparison put models scored on
    the two files side by side."""
    first, second = tmp_path / "a" / "frames.extxyz", tmp_path / "b" / "frames.extxyz"
    first.parent.mkdir()
    second.parent.mkdir()
    shutil.copy(CASES, first)
    lines = CASES.read_text().splitlines(keepends=True)
    second.write_text("".join(lines[: 2 + int(lines[0])]))  # only the first frame
    assert evaluate(first, tmp_path, MODEL).exit_code == 0
    result = evaluate(second, tmp_path, "emt")
    assert result.exit_code == 0, result.output
    key_a, key_b = data_key(first)[0], data_key(second)[0]
    assert key_a != key_b and key_a.startswith("frames-")
    assert len((tmp_path / "eval" / LABEL / f"{key_a}.csv").read_text().splitlines()) == 9
    assert "| emt |" in (tmp_path / "eval" / f"{key_b}.md").read_text()
    assert "| emt |" not in (tmp_path / "eval" / f"{key_a}.md").read_text()


def test_a_comparison_of_different_files_is_refused(tmp_path):
    """Summaries filed under one key that name other contents (e.g. copied in by hand) are not compared."""
    assert evaluate(CASES, tmp_path).exit_code == 0
    key, _ = data_key(CASES)
    other = tmp_path / "eval" / "other-model"
    other.mkdir()
    summary = json.loads((tmp_path / "eval" / LABEL / f"{key}.summary.json").read_text())
    (other / f"{key}.summary.json").write_text(json.dumps(summary | {"model": "other", "data_sha256": "0" * 64}))
    result = evaluate(CASES, tmp_path)
    assert result.exit_code == 2
    assert "scored on different files" in flat(result.output)
