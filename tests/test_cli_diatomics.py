"""`bench diatomics` on elements outside the model's set: reported as such, not as failures of the model, and
scored as MBD scores them (Po, At, Rn, Fr, Ra are outside MBD's 87 elements; another missing element counts as an
element that did not run)."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from geodite.cli.main import app
from geodite.tasks.contract import UNSUPPORTED
from geodite.metrics.diatomics_scores import diatomics_summary
from geodite.tasks.diatomics import pbe_reference

runner = CliRunner()


def test_elements_outside_the_model_are_named_and_not_failures(tmp_path):
    """Before: '2 failed' without saying these are elements the shipped model does not have."""
    result = runner.invoke(app, ["bench", "diatomics", "--elements", "H,Po,Rn", "--results-dir", str(tmp_path),
                                 "--no-plots", "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["n_failed"], summary["n_unsupported"], summary["unsupported"]) == (0, 2, ["Po", "Rn"])
    text = " ".join(result.output.split())
    assert "2 item(s) outside the model's elements, not counted as failures: Po, Rn" in text
    assert "would not count in the CDS of any model" in text
    rows = pd.read_csv(tmp_path / "diatomics" / "geodite" / "rows.csv").set_index("key")
    assert rows.loc["Po", "status"] == UNSUPPORTED and "outside the model's elements" in rows.loc["Po", "error"]
    assert summary["n_scored"] == 1 and summary["n_excluded"] == 0  # Po, Rn: outside MBD's 87 as well


def test_an_unsupported_element_of_the_87_counts_as_not_run_in_the_cds():
    ok = {"status": "ok", "element": "H", "Z": 1, "force_flips": 1.0, "item_wall_s": 1.0}
    rows = pd.DataFrame([ok, {"key": "He", "status": UNSUPPORTED, "element": "He", "Z": 2, "item_wall_s": 0.0},
                         {"key": "Po", "status": UNSUPPORTED, "element": "Po", "Z": 84, "item_wall_s": 0.0}])
    # He, as MBD counts a missing element; Po is not scored
    assert diatomics_summary(rows, "mbd", pbe_reference())["n_excluded"] == 1
