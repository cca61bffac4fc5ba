"""Every CLI option is checked where it is parsed: a meaningless value is refused with one clear message and
exit code 2 before anything runs (no traceback, no "successful" run that computed nothing)."""

from __future__ import annotations

import json
import re

import pytest
import typer
from ase.build import bulk
from ase.io import write
from typer.testing import CliRunner

from geodite.cli.common import parse_ints
from geodite.cli.main import app
from geodite.tasks.md import parse_time_fs
from tests.conftest import DATA

runner = CliRunner()


@pytest.fixture(scope="module")
def md_reference(tmp_path_factory):
    """A one-system MD reference set (EMT copper) so that an accepted command would run in seconds."""
    folder = tmp_path_factory.mktemp("reference")
    write(folder / "cu.extxyz", [bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)])
    manifest = {"name": "cu", "systems": [{"name": "Cu32", "trajectory": "cu.extxyz", "format": "extxyz",
                                          "temperature_K": 300, "timestep_fs": 2.0, "frame_interval_steps": 10}]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def refused(args: list[str], option: str) -> str:
    """Run the CLI; assert it refused ``option`` as a usage error (exit 2, no traceback); return the message
    with the error box's frame and line breaks taken out."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    message = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())
    assert "Traceback" not in message
    assert f"Invalid value for '{option}'" in message or f"{option}:" in message, message
    return message


@pytest.mark.parametrize("limit", ["-1", "0"])
@pytest.mark.parametrize("command", [["eval", "--data", str(DATA / "geodite_small_cases.extxyz")],
                                     ["bench", "diatomics", "--elements", "H"],
                                     ["bench", "discovery"], ["bench", "kappa"], ["bench", "md"], ["bench", "all"]])
def test_limit_must_be_at_least_one_in_every_command(tmp_path, command, limit):
    """--limit -1 silently dropped the last item, --limit 0 meant 'all' in eval and 'none' in bench."""
    output = refused([*command, "--model", "emt", "--limit", limit, "--results-dir", str(tmp_path)], "--limit")
    assert "greater than or equal to 1" in output or "x>=1" in output


@pytest.mark.parametrize("option,value", [("--workers", "0"), ("--workers", "-3"), ("--threads", "0"),
                                          ("--dtype", "float16"), ("--device", "gpu")])
def test_shared_run_options_are_checked(tmp_path, option, value):
    refused(["bench", "diatomics", "--model", "emt", "--elements", "H", option, value,
             "--results-dir", str(tmp_path)], option)


def test_cuda_without_cuda_is_a_usage_error(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    output = refused(["bench", "diatomics", "--model", "emt", "--device", "cuda", "--results-dir", str(tmp_path)],
                     "--device")
    assert "CUDA is not available" in output


@pytest.mark.parametrize("time,message", [("0ps", "must be > 0"), ("-1ps", "must be > 0"),
                                          ("0.05", "give a number and a unit"), ("1fs", "shorter than one")])
def test_md_time_must_simulate_something(tmp_path, md_reference, time, message):
    """0ps, -1ps and a unit-less 0.05 (read as 0.05 fs) recorded 'stable' rows with nothing simulated."""
    output = refused(["bench", "md", "--model", "emt", "--reference", str(md_reference), "--time", time,
                      "--results-dir", str(tmp_path), "--no-plots"], "--time")
    assert message in output
    assert not (tmp_path / "md").exists()


@pytest.mark.parametrize("args,option", [
    (["bench", "md", "--timestep", "0"], "--timestep"),
    (["bench", "md", "--frame-interval", "0"], "--frame-interval"),
    (["bench", "md", "--thermostat", "berendsen"], "--thermostat"),
    (["bench", "discovery", "--fmax", "0"], "--fmax"),
    (["bench", "discovery", "--steps", "0"], "--steps"),
    (["bench", "discovery", "--rattle", "-0.1"], "--rattle"),
    (["bench", "kappa", "--temperature", "-300"], "--temperature"),
    (["bench", "kappa", "--q-mesh", "0,9,9"], "--q-mesh"),
    (["bench", "speed", "--sizes", "64,0"], "--sizes"),
    (["bench", "speed", "--sizes", "sixty"], "--sizes"),
    (["bench", "speed", "--repeats", "0"], "--repeats"),
    (["bench", "speed", "--structure", "graphene"], "--structure"),
    (["bench", "all", "--speed-sizes", "20000"], "--speed-sizes"),
    (["bench", "all", "--md-time", "40"], "--md-time"),
    (["export", "geodite", "--out", "x.pt2", "--dtype", "float16"], "--dtype"),
    (["lammps", "in.lmp", "--elements", "Si", "--skin", "-1"], "--skin"),
])
def test_task_options_are_checked(tmp_path, args, option):
    refused([*args, "--results-dir", str(tmp_path)] if args[0] == "bench" else args, option)
    assert not any(tmp_path.iterdir())


def test_limit_means_the_first_n_items(tmp_path):
    """The one meaning of --limit N, here in eval: the first N structures of the file."""
    result = runner.invoke(app, ["eval", "--model", str(DATA / "geodite_small_checkpoint.pt"), "--data",
                                 str(DATA / "geodite_small_cases.extxyz"), "--limit", "3", "--results-dir",
                                 str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["n_structures"] == 3


def test_time_needs_a_unit_and_a_positive_value():
    assert parse_time_fs("2ps") == 2000 and parse_time_fs("1 ns") == 1e6 and parse_time_fs("500fs") == 500
    for text in ("500", "0fs", "-2ps", "1e-3e4ps", "two picoseconds"):
        with pytest.raises(ValueError):
            parse_time_fs(text)


def test_parse_ints_bounds():
    assert parse_ints("2x2x2", "--q-mesh") == [2, 2, 2] and parse_ints(" ", "--q-mesh") is None
    assert parse_ints("64,216", "--sizes", None, high=1000) == [64, 216]
    for text, n in (("2,2", 3), ("2,0,2", 3), ("64,2000", None), ("a", None)):
        with pytest.raises(typer.BadParameter):
            parse_ints(text, "--x", n, high=1000)


@pytest.mark.parametrize("args,option,message", [
    (["bench", "discovery", "--optimizer", "bogus"], "--optimizer", "unknown ASE optimizer 'bogus'"),
    (["bench", "discovery", "--fmax", "inf"], "--fmax", "got inf"),
    (["bench", "discovery", "--fmax", "nan"], "--fmax", "got nan"),
    (["bench", "discovery", "--strain", "inf"], "--strain", "got inf"),
    (["bench", "kappa", "--fmax", "inf"], "--fmax", "got inf"),
    (["bench", "diatomics", "--elements", ""], "--elements", "names nothing"),
    (["bench", "diatomics", "--elements", " , "], "--elements", "names nothing"),
    (["bench", "kappa", "--materials", ""], "--materials", "names nothing"),
    (["bench", "kappa", "--space-groups", ""], "--space-groups", "names nothing"),
    (["bench", "md", "--systems", ""], "--systems", "names nothing"),
    (["bench", "all", "--tasks", ""], "--tasks", "names nothing"),
])
def test_meaningless_values_are_refused_before_any_work(tmp_path, args, option, message):
    """--optimizer bogus failed every item (exit 0), --fmax inf reported unrelaxed structures as converged,
    --elements "" ran all 92 elements."""
    output = refused([*args, "--model", "emt", "--results-dir", str(tmp_path)], option)
    assert message in output
    assert not any(tmp_path.iterdir())


def test_speed_models_must_name_a_model(tmp_path):
    output = refused(["bench", "speed", "--models", "", "--results-dir", str(tmp_path)], "--models")
    assert "names nothing" in output


def test_relax_settings_refuse_what_would_not_relax():
    from geodite.relax import RelaxSettings, optimizer_names

    assert {"FIRE", "BFGS", "LBFGS"} <= set(optimizer_names()) and "Optimizer" not in optimizer_names()
    for bad in (dict(optimizer="bogus"), dict(optimizer="Dynamics"), dict(fmax=float("inf")), dict(fmax=0.0),
                dict(steps=0)):
        with pytest.raises(ValueError):
            RelaxSettings(**bad)


def test_a_run_in_which_every_item_fails_exits_non_zero_and_says_why(tmp_path):
    """EMT has no potential for Fe: before, every item failed, the reason was not shown and the exit code was 0."""
    args = ["bench", "diatomics", "--model", "emt", "--elements", "Fe,Mn", "--results-dir", str(tmp_path),
            "--no-plots", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "2 of 2 item(s) failed" in text and "No EMT-potential for" in text
    assert "every item of diatomics failed" in text
    again = runner.invoke(app, args)  # the failures are stored: the rerun says so and how to recompute them
    assert again.exit_code == 1 and "--retry-failed" in again.output


def test_a_partly_failed_run_names_its_failures_and_exits_zero(tmp_path):
    result = runner.invoke(app, ["bench", "diatomics", "--model", "emt", "--elements", "Cu,Fe", "--results-dir",
                                 str(tmp_path), "--no-plots", "--no-progress"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 of 2 item(s) failed" in text and "No EMT-potential for Fe" in text
