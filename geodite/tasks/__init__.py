"""Benchmark tasks: one module per benchmark, one shared runner, store and results writer.

A task states its protocol and row schema (``config``, ``items``, ``run_item``,
``metrics``, ``plots``); :func:`geodite.tasks.runner.run_task` does the rest.
"""

TASKS = {"discovery": "geodite.tasks.discovery:DiscoveryTask"}
