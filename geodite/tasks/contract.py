"""What a benchmark task is and what it gets: the contract between the tasks and the runner.

A task (:class:`Task`) is a protocol over items producing one row per item, then metrics over the rows.
It implements ``run_item(item, ctx) -> row`` or ``run_batch(items, ctx) -> Iterator[row]``; ``ctx`` is a
:class:`WorkerContext` (the model, :meth:`WorkerContext.evaluate`, the scratch folder). Its protocol
parameters are dataclass fields marked ``field(metadata=PROTOCOL)`` (:func:`protocol_config`), to which the
runner adds the model's weights and dtype (:func:`model_protocol`). An item's
exception is its :func:`failed_row`; :func:`item_rows` runs ``run_item`` over a chunk. Everything else
(the store, resumption: :mod:`geodite.tasks.runner`; workers, Dask: :mod:`geodite.tasks.executors`) is not
the task's.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from geodite.calculator import GeoditeCalculator, Prediction, predict

PROTOCOL = {"protocol": True}  # field(metadata=PROTOCOL): a protocol parameter, hashed into the store's config


def protocol_config(task) -> dict:
    """The task's protocol (JSON-able): its fields marked ``metadata=PROTOCOL`` plus its optional
    ``protocol_extras()`` (derived entries such as data-file hashes). A change invalidates the store."""
    config = {f.name: getattr(task, f.name) for f in dataclasses.fields(task) if f.metadata.get("protocol")}
    extras = getattr(task, "protocol_extras", None)
    return config | (extras() if extras is not None else {})


def model_protocol(handle, dtype: str) -> dict:
    """The model's part of a store's protocol: what fixes its weights (``handle.weights_identity()`` of a
    :class:`~geodite.registry.ModelHandle`: a checkpoint's sha256, or the package the weights come with) and the
    floating-point ``dtype`` it ran in, so rows of other weights or another precision are refused rather than
    reused."""
    return handle.weights_identity() | {"dtype": dtype}


@dataclass
class WorkerContext:
    """What a task's ``run_item``/``run_batch`` gets: the model's :class:`~geodite.registry.ModelHandle` (name,
    label, energy convention) and its calculator, and the task's scratch folder (owned by the runner; None
    outside a run)."""

    handle: Any
    calculator: Any
    device: str = "cpu"
    cache: dict = field(default_factory=dict)
    scratch: Path | None = None
    #: where a task says how far a long item has got ("AlN: FC3 supercells 120/480"): the progress bar of an
    #: in-process run; a no-op elsewhere (pool and Dask workers)
    note: Callable[[str], None] = field(default=lambda text: None, repr=False, compare=False)

    @property
    def evaluator(self):
        """The Geodite :class:`~geodite.calculator.Evaluator` behind the calculator, or None (other models)."""
        return getattr(self.calculator, "evaluator", None)

    def evaluate(self, structures: Sequence, compute_stress: bool = True,
                 progress: Callable[[int], None] | None = None) -> list[Prediction]:
        """One :class:`~geodite.calculator.Prediction` per structure (energy eV, forces eV/Å, stress eV/Å³),
        in order: batched through the Evaluator for Geodite, one structure at a time through the ASE
        calculator otherwise. A structure that cannot be evaluated gets a Prediction with ``error``.
        ``progress(n)``, when given, hears the number of structures done after each model call (the calls are
        the Evaluator's own: consecutive structures up to its ``atoms_per_call`` atoms)."""
        if progress is None:
            return predict(self.calculator, structures, compute_stress)
        predictions: list[Prediction] = []
        for part in model_calls(structures, self.evaluator.atoms_per_call if self.evaluator is not None else 0):
            predictions += predict(self.calculator, part, compute_stress)
            progress(len(predictions))
        return predictions

    def md_calculator(self, skin: float):
        """The calculator for MD: Geodite reuses neighbour lists within ``skin`` Å (same results); others as they are."""
        if self.evaluator is None or skin <= 0:
            return self.calculator
        return GeoditeCalculator(self.evaluator, skin=skin)


def model_calls(structures: Sequence, atoms_per_call: int) -> list[list]:
    """``structures`` split as the Evaluator batches them: consecutive structures up to ``atoms_per_call`` atoms a
    call (a larger structure alone); one structure a call when ``atoms_per_call`` is 0 (other calculators)."""
    calls: list[list] = []
    atoms_in_call = 0
    for atoms in structures:
        if not calls or not atoms_per_call or atoms_in_call + len(atoms) > atoms_per_call:
            calls.append([])
            atoms_in_call = 0
        calls[-1].append(atoms)
        atoms_in_call += len(atoms)
    return calls


@runtime_checkable
class Task(Protocol):
    """A benchmark task. Besides these, a task implements ``run_item(item, ctx) -> row`` or
    ``run_batch(items, ctx) -> Iterator[row]`` (rows with their item's ``key``, yielded as they finish).

    Optional hooks: ``protocol_extras() -> dict`` (see :func:`protocol_config`), and, for a task with a
    Matbench Discovery submission format, ``submission(df, summary, folder, model, date) -> (files,
    yaml_blocks)``: it writes the task's submission files of the rows ``df`` into ``folder`` and returns them
    with its blocks of the model YAML (:data:`geodite.submission.SubmissionWriter`); the runner calls it after
    the metrics through :func:`geodite.submission.write_submission`."""

    name: str

    def items(self) -> list[dict]: ...  # each with a unique str "key"

    def metrics(self, df: pd.DataFrame, model: str) -> dict: ...  # rows -> metrics

    def plots(self, df: pd.DataFrame, out_dir: Path, model: str) -> list[Path]: ...


#: The status of an item the model does not cover (e.g. an element outside its element set): no result, and not
#: a failure of the model; the other statuses are "ok" and "failed".
UNSUPPORTED = "unsupported"


def failed_row(key: str, exc: BaseException) -> dict:
    """The row of an item whose computation raised ``exc``."""
    return {"key": key, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(exc, limit=5))}


def item_rows(run_item, items: list[dict], ctx: WorkerContext) -> Iterator[dict]:
    """``run_item(item, ctx)`` for one item after the other, each row with its ``key``; an item's exception
    becomes its failed row. What the runner does for a task without ``run_batch``."""
    for item in items:
        try:
            row = dict(run_item(item, ctx))
        except Exception as exc:  # noqa: BLE001 - a failing item must not stop the run
            row = failed_row(item["key"], exc)
        yield row | {"key": item["key"]}
