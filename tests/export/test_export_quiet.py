"""`geodite export` prints what it does and the file it wrote, not torch's notes on its own internals (a
FutureWarning on LeafSpec and inductor's 'missing a c-shim implementation' leaked to the user)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from typer.testing import CliRunner

from geodite import export
from geodite.cli.main import app


def _torch_noise() -> None:
    """What torch 2.13 emits while exporting the shipped model (seen with `geodite export geodite`)."""
    warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and "
                  "treespec.is_leaf()` instead.", FutureWarning, stacklevel=1)
    logging.getLogger("torch._inductor.ir").warning(
        "aten._linalg_det.default is missing a c-shim implementation, using proxy executor as fallback")


def test_quiet_compiler_silences_torch_internals_and_restores_after(caplog):
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        with export.quiet_compiler():
            _torch_noise()
        assert not caught and "c-shim" not in caplog.text
        _torch_noise()
        assert len(caught) == 1 and "c-shim" in caplog.text


def test_export_command_output_has_no_torch_warnings(tmp_path, monkeypatch, caplog):
    """Every stage of an export (tracing the whole graph and the per-layer stages, compiling, packaging) makes
    torch's noise here; the command shows none of it."""
    import torch._inductor.package

    class Program:
        example_inputs = ((), {})

        def module(self, check_guards: bool = True) -> None:
            _torch_noise()

    def fake_compile(module, args, kwargs, options):
        _torch_noise()
        return ["compiled"]

    monkeypatch.setattr(export, "export_program", lambda *args: (_torch_noise(), Program())[1])
    monkeypatch.setattr(export, "stage_programs", lambda *args: (_torch_noise(), (Program(), Program()))[1])
    monkeypatch.setattr(export.torch._inductor, "aot_compile", fake_compile)
    monkeypatch.setattr(torch._inductor.package, "package_aoti",
                        lambda path, files: Path(path).write_bytes(b"package"))
    with warnings.catch_warnings(record=True) as shown, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        result = CliRunner().invoke(app, ["export", "geodite", "--out", str(tmp_path / "g.pt2")])
    assert result.exit_code == 0, result.output
    assert not [str(w.message) for w in shown] and "c-shim" not in caplog.text
    assert f"wrote {tmp_path / 'g.pt2'}" in " ".join(result.output.split())
