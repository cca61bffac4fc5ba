"""Benchmark tasks: one module per benchmark, one shared runner, store and results writer.

A task states its protocol and row schema (the contract: :mod:`geodite.tasks.contract`); the task table and
factory are :mod:`geodite.tasks.suite` (``TASKS``, ``make_task``); :func:`geodite.tasks.runner.run_task` does
the rest.
"""
