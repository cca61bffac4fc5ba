"""`geodite bench all` and `geodite report`: a tiny real run of every task, the report parsed back."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geodite import report as rep
from geodite.tasks import suite
from geodite.provenance import data_files, model_provenance, shown_path
from geodite.cli.main import app
from geodite.registry import model_label

SMALL = str(Path(__file__).parent / "data" / "geodite_small_checkpoint.pt")
LABEL = model_label(SMALL)
PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class ReportParser(HTMLParser):
    """Sections (by id) → their tables (lists of rows of cell text, with row classes) and images."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: str | None = None
        self.cell: list[str] | None = None
        self.row: list[str] | None = None
        self.row_class: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.current = attrs["id"]
            self.sections[self.current] = {"tables": [], "images": [], "text": []}
        elif tag == "table" and self.current:
            self.sections[self.current]["tables"].append([])
        elif tag == "tr":
            self.row, self.row_class = [], attrs.get("class")
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "img" and self.current:
            self.sections[self.current]["images"].append(attrs)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.row is not None:
            self.row.append("".join(self.cell or []).strip())
            self.cell = None
        elif tag == "tr" and self.current and self.row is not None:
            self.sections[self.current]["tables"][-1].append((self.row, self.row_class))
            self.row = None
        elif tag == "section":
            self.current = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)
        if self.current:
            self.sections[self.current]["text"].append(data)


def parse(path: Path) -> dict[str, dict]:
    parser = ReportParser()
    parser.feed(Path(path).read_text())
    return parser.sections


def check_images(section: dict) -> list[str]:
    """Every image is an embedded, decodable PNG; returns their file names."""
    for img in section["images"]:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    return [img["data-file"] for img in section["images"]]


# --------------------------------------------------------------------------- a tiny real run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Every task on the small upstream checkpoint, one item each, protocols shrunk to seconds."""
    root = tmp_path_factory.mktemp("results")
    opts = suite.AllOptions(
        model=SMALL, limit=1, results_dir=root, progress=False, md_time="6fs",
        task_options={
            "discovery": {"steps": 3},
            "kappa": {"steps": 3, "fmax": 0.05, "start_scan": False, "q_mesh": [3, 3, 3],
                      "fc2_supercell": [1, 1, 1], "fc3_supercell": [1, 1, 1]},
            "md": {"frame_interval": 1},
            "speed": {"sizes": (8,), "repeats": 1, "memory": False},
        },
    )
    summary = suite.run_all(opts)
    written = rep.write_report([SMALL], root)
    return root, summary, written


def test_run_all_runs_every_task(tiny_run):
    root, summary, _ = tiny_run
    assert list(summary["tasks"]) == list(rep.TASKS)
    for name, result in summary["tasks"].items():
        if name == "kappa" and result["status"] == "not run":  # phono3py missing: reported, not an error
            assert "phono3py" in result["reason"]
            continue
        assert result["status"] == "ok", (name, result)
        assert result["wall_s"] >= 0
    assert summary["tasks"]["discovery"]["n_items"] == 1
    assert (root / "md" / LABEL / "scratch").is_dir()  # the runner's scratch folder, next to the results, ignored by git
    assert (root / "speed" / LABEL / "speed.json").is_file()
    prov = json.loads((root / LABEL / "provenance.json").read_text())
    assert prov["model"]["sha256"] and len(prov["model"]["sha256"]) == 64
    assert prov["versions"]["torch"] and prov["hardware"]["cores"] >= 1
    assert summary["cps"]["CPS"] is None and summary["cps"]["reason"]


def test_report_has_every_task_table_and_figure(tiny_run):
    root, summary, written = tiny_run
    assert Path(written["html"]) == root / LABEL / "report.html"
    sections = parse(Path(written["html"]))
    for task in rep.TASKS:
        if summary["tasks"][task]["status"] != "ok":
            assert "not run" in " ".join(sections[task]["text"])
            continue
        section = sections[task]
        assert section["tables"], task
        names = check_images(section)
        on_disk = {p.name for p in (root / ("speed" if task == "speed" else task) / LABEL).glob("*.png")}
        assert on_disk and set(names) == on_disk, (task, names, on_disk)
    metrics = {row[0][0]: row[0][1] for row in sections["diatomics"]["tables"][0][1:]}
    assert metrics["n_items"] == "1"
    # markdown: the same figures, linked relatively, and the files are there
    md = Path(written["markdown"]).read_text()
    links = [line.split("](", 1)[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert links and all((root / LABEL / link).is_file() for link in links)
    assert len(links) == written["figures"]


def test_report_provenance_and_published_marking(tiny_run):
    root, _, written = tiny_run
    sections = parse(Path(written["html"]))
    table = sections["headline"]["tables"][0]
    ours = [cells for cells, cls in table if cls == "ours"]
    published = [cells for cells, cls in table if cls == "published"]
    assert [c[0] for c in ours] == [LABEL] and ours[0][1] == "ours (this run)"
    assert len(published) == len(rep.PUBLISHED_TABLE)
    assert all(c[0].endswith("[published]") and "not ours" in c[1] for c in published)
    geodite_mp = next(c for c in published if c[0].startswith("Geodite-MP"))
    assert geodite_mp[2] == rep.PUBLISHED_COMPLIANT and ours[0][2] == "unknown: training data not recorded"
    assert geodite_mp[3:13] == ["3.6", "0.728", "0.925", "0.771", "4.771", "0.729", "0.041", "0.806", "0.499", "0.086"]
    text = " ".join(sections["provenance"]["text"])
    from geodite.data.downloads import file_digest

    assert file_digest(SMALL) in text
    for package in ("geodite", "torch", "ase", "pymatgen"):
        assert package in text
    shipped = [d["sha256"] for d in data_files()]
    assert shipped and all(sha in text for sha in shipped)
    walls = next(t for t in sections["provenance"]["tables"] if t[0][0][:3] == ["task", "status", "wall time (s)"])
    assert [cells[0] for cells, _ in walls[1:]] == list(rep.TASKS)
    weights = {cells[0]: cells[-1] for cells, _ in walls[1:]}
    assert weights["discovery"] == weights["md"] == "this checkpoint"
    assert "Mixed weights" not in text


def test_report_flags_results_of_other_weights(tiny_run, tmp_path):
    """A task whose stored results came from other weights (the shipped checkpoint changed) is marked."""
    import shutil

    root = tmp_path / "results"
    shutil.copytree(tiny_run[0], root)
    metrics_path = next(root.glob(f"discovery/{LABEL}/metrics.json"))
    metrics = json.loads(metrics_path.read_text())
    metrics["config"]["weights_sha256"] = "ab" * 32
    metrics_path.write_text(json.dumps(metrics))
    sections = parse(Path(rep.write_report([SMALL], root)["html"]))
    walls = next(t for t in sections["provenance"]["tables"] if t[0][0][:3] == ["task", "status", "wall time (s)"])
    weights = {cells[0]: cells[-1] for cells, _ in walls[1:]}
    assert weights["discovery"] == "abababababab… (other weights)" and weights["md"] == "this checkpoint"
    text = "".join(sections["provenance"]["text"])
    assert "Mixed weights:" in text and "discovery ran with other weights than the checkpoint above" in text
    assert weights["speed"] == "—"


def test_cli_bench_all_resumes_and_prints_one_json(tiny_run):
    root, _, _ = tiny_run
    result = CliRunner().invoke(app, ["bench", "all", "--model", SMALL, "--limit", "1", "--tasks", "diatomics",
                                      "--results-dir", str(root), "--no-progress", "--json", "--no-report"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["tasks"]["diatomics"]["status"] == "ok"
    assert out["tasks"]["diatomics"]["n_skipped"] == 1 and out["tasks"]["diatomics"]["n_computed"] == 0
    assert set(out["cps"]) >= {"CPS", "reason", "F1", "kappa_SRME", "RMSD"}
    result = CliRunner().invoke(app, ["report", "--model", SMALL, "--results-dir", str(root), "--json",
                                      "--out", str(root / "linked"), "--no-embed"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout.strip().splitlines()[-1])
    sections = parse(Path(written["html"]))
    srcs = [img["src"] for s in sections.values() for img in s["images"]]
    assert srcs and all((root / "linked" / s).is_file() for s in srcs)


# --------------------------------------------------------------------------- failures and several models


def test_failed_task_does_not_stop_the_others(tmp_path, monkeypatch):
    real = suite.make_task

    def broken(name, *args, **settings):
        if name == "discovery":
            raise RuntimeError("boom")
        return real(name, *args, **settings)

    monkeypatch.setattr(suite, "make_task", broken)
    monkeypatch.setattr(suite.importlib.util, "find_spec", lambda name, *a: None if name == "phono3py" else True)
    opts = suite.AllOptions(model=SMALL, limit=1, tasks=("discovery", "kappa", "diatomics"), results_dir=tmp_path,
                          progress=False, plots=False)
    summary = suite.run_all(opts)
    assert summary["tasks"]["discovery"] == {"status": "failed", "error": "RuntimeError: boom",
                                             "wall_s": summary["tasks"]["discovery"]["wall_s"]}
    assert summary["tasks"]["kappa"]["status"] == "not run" and "phono3py" in summary["tasks"]["kappa"]["reason"]
    assert summary["tasks"]["diatomics"]["status"] == "ok"
    sections = parse(Path(rep.write_report([SMALL], tmp_path)["html"]))
    assert "failed: RuntimeError: boom" in " ".join(sections["discovery"]["text"])
    assert "not run: phono3py is not installed" in " ".join(sections["kappa"]["text"])
    assert sections["diatomics"]["tables"]


def _fake_results(root: Path, label: str, tasks: tuple[str, ...], mae: float) -> None:
    for task in tasks:
        out = root / ("speed" if task == "speed" else task) / label
        out.mkdir(parents=True)
        metrics = {"task": task, "model": label, "n_items": 2, "wall_s": 1.5, "MAE": mae, "config": {"mode": "offline"}}
        if task == "speed":
            metrics |= {"rows": [{"model": label, "n_atoms": 64, "us_per_atom_step": 100.0}], "machine": "test"}
        (out / ("speed.json" if task == "speed" else "metrics.json")).write_text(json.dumps(metrics))
        (out / f"{task}-plot.png").write_bytes(PNG_1x1)


def test_several_models_side_by_side(tmp_path):
    _fake_results(tmp_path, "geodite", rep.TASKS, 0.04)
    _fake_results(tmp_path, "emt", ("discovery", "diatomics", "md", "speed"), 0.5)
    written = rep.write_report("geodite,emt", tmp_path)
    assert Path(written["html"]).parent == tmp_path / "geodite_vs_emt"
    assert written["tasks"]["kappa"] == ["geodite"] and written["tasks"]["discovery"] == ["geodite", "emt"]
    sections = parse(Path(written["html"]))
    header, *rows = sections["discovery"]["tables"][0]
    assert header[0] == ["metric", "geodite", "emt"]
    assert dict((r[0][0], r[0][1:]) for r in rows)["MAE"] == ["0.04", "0.5"]
    assert check_images(sections["discovery"]) == ["discovery-plot.png", "discovery-plot.png"]
    assert "emt: kappa not run" in "".join(sections["kappa"]["text"])
    assert len(check_images(sections["kappa"])) == 1
    ours = [cells[0] for cells, cls in sections["headline"]["tables"][0] if cls == "ours"]
    assert ours == ["geodite", "emt"]


def test_eval_section_lists_each_evaluation_with_its_parity_figure(tmp_path):
    """`geodite eval` results of a model get a row (forces beside zero forces, relaxed frames, elements worse
    than zero) and its parity figure; a model without eval results gets no row, a report without any no section."""
    _fake_results(tmp_path, "emt", ("discovery",), 0.5)
    assert "eval" not in parse(Path(rep.write_report("emt", tmp_path)["html"]))
    out = tmp_path / "eval" / "geodite"
    out.mkdir(parents=True)
    summary = {"data": "/x/mptrj-random-1k.xyz", "n_structures": 1000, "energy_per_atom_mae": 0.05,
               "forces_mae": 0.1204, "zero_forces_mae": 0.1987, "n_relaxed": 309, "relaxed_forces_mae": 0.03,
               "relaxed_zero_forces_mae": 0.011, "elements_worse_than_zero": ["O", "Si"]}
    (out / "mptrj-random-1k-abc.summary.json").write_text(json.dumps(summary))
    (out / "mptrj-random-1k-abc.parity.png").write_bytes(PNG_1x1)
    _fake_results(tmp_path, "geodite", ("discovery",), 0.04)
    section = parse(Path(rep.write_report("geodite,emt", tmp_path)["html"]))["eval"]
    header, *rows = section["tables"][0]
    assert [cells for cells, _ in rows] == [["geodite", "mptrj-random-1k.xyz", "1000", "50.0", "120.4", "198.7",
                                             "30.0 / 11.0 (309)", "O Si"]]
    assert check_images(section) == ["mptrj-random-1k-abc.parity.png"]


def test_shipped_checkpoint_is_recorded_by_its_place_in_the_package(tmp_path):
    """Reports name the shipped weights as geodite/weights/…, not by where this checkout lies (reference-results
    once recorded /work/wt-s8/geodite/weights/geodite-distilled.pt); other files keep their absolute path."""
    info = model_provenance("geodite")
    assert info["checkpoint"] == "geodite/weights/geodite-distilled.pt" and len(info["sha256"]) == 64
    assert shown_path(tmp_path / "mine.pt") == str((tmp_path / "mine.pt").resolve())
