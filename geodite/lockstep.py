"""Several ASE simulations in lockstep, their model calls batched: one Evaluator call per step for all.

Each simulation (an ASE integrator, unchanged: the same Nosé–Hoover chain or Langevin code as a run
alone) runs in its own thread with a :class:`LockstepCalculator`. A force call blocks until every
simulation still running has asked for its forces; then the calling thread of :func:`run_in_lockstep`
(the only one that calls the model) evaluates them all in one
:meth:`~geodite.calculator.Evaluator.evaluate` call (forward passes of up to the Evaluator's
``atoms_per_call`` atoms) and wakes them. A simulation that ends (finished, unstable or failed) leaves,
and the rest go on without it. Threads only wait for each other: the model call, the one expensive part,
runs once per step for all of them.

Each structure's prediction is the one it gets alone up to float rounding (the graph of a batch holds
the same edges; tests/test_lockstep.py checks a batched MD trajectory against the same run alone).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ase import Atoms

from geodite.calculator import Evaluator, GeoditeCalculator, Prediction
from geodite.graph import NeighbourCache

T = TypeVar("T")
R = TypeVar("R")


class LockstepCancelled(RuntimeError):
    """The batch was stopped (an interrupt or an error outside the simulations) while a member waited."""


class Lockstep:
    """The meeting point of ``members`` simulations: :meth:`evaluate` (a member's thread) returns once every
    member still in has asked and :meth:`serve` (the one thread that calls the model) has evaluated them all
    in one Evaluator call; :meth:`leave` takes a member out."""

    def __init__(self, evaluator: Evaluator, members: int):
        self.evaluator = evaluator
        self.members = members
        self.calls = 0  # Evaluator.evaluate calls made (one per lockstep step)
        self._condition = threading.Condition()
        self._waiting: dict[int, tuple[Atoms, bool, NeighbourCache | None]] = {}
        self._results: dict[int, Prediction | BaseException] = {}
        self._cancelled = False
        self._left = False

    def evaluate(self, member: int, atoms: Atoms, compute_stress: bool,
                 neighbours: NeighbourCache | None) -> Prediction:
        """``member``'s prediction for ``atoms`` (energy eV, forces eV/Å, stress eV/Å³ if asked)."""
        with self._condition:
            if self._cancelled:
                raise LockstepCancelled("the lockstep batch was stopped")
            self._waiting[member] = (atoms, compute_stress, neighbours)
            self._condition.notify_all()
            while member not in self._results:
                if self._cancelled:
                    raise LockstepCancelled("the lockstep batch was stopped")
                self._condition.wait()
            result = self._results.pop(member)
        if isinstance(result, BaseException):
            raise result
        return result

    def leave(self) -> None:
        """One member fewer: the others no longer wait for it."""
        with self._condition:
            self.members -= 1
            self._left = True
            self._condition.notify_all()

    def cancel(self) -> None:
        """Wake every waiting member with :class:`LockstepCancelled`."""
        with self._condition:
            self._cancelled = True
            self._condition.notify_all()

    def serve(self, timeout: float) -> None:
        """Wait (≤ ``timeout`` s) until every member still in waits, then evaluate them all in one call, in
        this thread; return early when a member leaves. All model calls come from the thread that serves:
        torch's OpenMP thread team belongs to the calling thread, and calls from many threads made as many
        teams spin against each other (3× slower on 2 cores)."""
        with self._condition:
            ready = self._condition.wait_for(
                lambda: self._left or (self._waiting and len(self._waiting) >= self.members), timeout)
            self._left = False
            if not ready or not self._waiting or len(self._waiting) < self.members:
                return
            members = list(self._waiting)
            requests = [self._waiting.pop(m) for m in members]
        try:
            predictions: list = self.evaluator.evaluate(
                [atoms for atoms, _, _ in requests], any(stress for _, stress, _ in requests),
                neighbours=[cache for _, _, cache in requests])
        except Exception as error:  # noqa: BLE001 - every member waiting on this call gets the error
            predictions = [error] * len(members)
        with self._condition:
            self.calls += 1
            self._results.update(zip(members, predictions))
            self._condition.notify_all()


class LockstepCalculator(GeoditeCalculator):
    """A :class:`~geodite.calculator.GeoditeCalculator` (same results, ``skin`` reuse of its own neighbour
    list) whose model calls go through a :class:`Lockstep` as member ``member``."""

    def __init__(self, lockstep: Lockstep, member: int, skin: float = 0.0):
        super().__init__(lockstep.evaluator, skin=skin)
        self.lockstep = lockstep
        self.member = member

    def predict_atoms(self, compute_stress: bool) -> Prediction:
        return self.lockstep.evaluate(self.member, self.atoms, compute_stress, self.neighbours)


def run_in_lockstep(
    evaluator: Evaluator, jobs: Iterable[T], simulate: Callable[[T, LockstepCalculator], R], skin: float = 0.0,
) -> Iterator[tuple[T, R | BaseException]]:
    """Run ``simulate(job, calculator)`` for every job at once, one thread each, their model calls batched
    (see the module docstring). Yields ``(job, result)`` as each finishes, ``(job, exception)`` for one that
    raised. Stopping the iteration (an interrupt) wakes and ends the waiting simulations."""
    jobs = list(jobs)
    if not jobs:
        return
    lockstep = Lockstep(evaluator, len(jobs))

    def member(index: int) -> R:
        try:
            return simulate(jobs[index], LockstepCalculator(lockstep, index, skin))
        finally:
            lockstep.leave()

    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="lockstep") as pool:
        futures = {pool.submit(member, index): index for index in range(len(jobs))}
        try:
            while futures:
                lockstep.serve(timeout=0.05)
                for future in [f for f in futures if f.done()]:
                    index = futures.pop(future)
                    error = future.exception()
                    yield jobs[index], future.result() if error is None else error
        finally:
            lockstep.cancel()
