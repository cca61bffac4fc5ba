"""The two batch knobs, each with one name and one default: atoms per model call (the Evaluator's
``atoms_per_call``, ``--batch-atoms``, :data:`geodite.calculator.ATOMS_PER_CALL`) and atoms in flight in a
relaxation (``atoms_in_flight``, ``bench discovery --max-atoms``, :data:`geodite.relax.ATOMS_IN_FLIGHT`)."""

from __future__ import annotations

import ast
from pathlib import Path

import geodite
from geodite.calculator import ATOMS_PER_CALL, Evaluator, GeoditeCalculator
from geodite.relax import ATOMS_IN_FLIGHT, default_atoms_in_flight

PACKAGE = Path(geodite.__file__).parent
KNOBS = ("atoms_per_call", "atoms_in_flight")


def defaults_named(tree: ast.AST, names: tuple[str, ...]) -> list[tuple[str, ast.expr]]:
    """(name, default) of every function parameter and annotated class field called one of ``names``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            positional = node.args.posonlyargs + node.args.args
            pairs = list(zip(positional[len(positional) - len(node.args.defaults):], node.args.defaults))
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
            found += [(arg.arg, default) for arg, default in pairs if arg.arg in names]
        elif isinstance(node, ast.ClassDef):
            found += [(item.target.id, item.value) for item in node.body if isinstance(item, ast.AnnAssign)
                      and isinstance(item.target, ast.Name) and item.target.id in names and item.value is not None]
    return found


def test_each_default_is_written_once():
    """No parameter or field of either knob has a number of its own as default (each takes the one constant, or
    None for "the default"), and ATOMS_PER_CALL's number is written nowhere else in the package."""
    literal_defaults, elsewhere = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        literal_defaults += [f"{path.name}: {name} = {ast.unparse(default)}" for name, default in
                             defaults_named(tree, KNOBS) if isinstance(default, ast.Constant) and default.value is not None]
        elsewhere += [f"{path.name}:{node.lineno}" for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and node.value == ATOMS_PER_CALL and type(node.value) is int]
    assert literal_defaults == []
    assert elsewhere == [f"calculator.py:{_line_of(PACKAGE / 'calculator.py', 'ATOMS_PER_CALL = ')}"]


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(text))


def test_the_defaults_reach_the_evaluator_and_the_engine(small_model):
    assert Evaluator(small_model).atoms_per_call == ATOMS_PER_CALL
    assert GeoditeCalculator(small_model).evaluator.atoms_per_call == ATOMS_PER_CALL
    assert GeoditeCalculator(small_model, atoms_per_call=5).evaluator.atoms_per_call == 5
    assert (default_atoms_in_flight("cpu"), default_atoms_in_flight("cuda:1")) == (ATOMS_IN_FLIGHT["cpu"],
                                                                                  ATOMS_IN_FLIGHT["cuda"])


def test_the_help_says_which_knob_and_renders_its_default():
    """``--batch-atoms`` (every runner command) and ``--max-atoms`` (discovery) keep their names; their help
    names the knob and shows the default from its constant."""
    import typer

    from geodite.cli.main import app

    discovery = typer.main.get_command(app).commands["bench"].commands["discovery"]
    options = {option.opts[0]: option for option in discovery.params}
    batch, in_flight = options["--batch-atoms"], options["--max-atoms"]
    assert "atoms per model call" in batch.help and batch.default == ATOMS_PER_CALL
    assert "atoms in flight" in in_flight.help
    assert f"{ATOMS_IN_FLIGHT['cpu']} on CPU, {ATOMS_IN_FLIGHT['cuda']} on CUDA" in in_flight.help
