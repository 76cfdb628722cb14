"""Harnesses for tests, benchmarks and demos; runtime code never imports this room.

- :mod:`live_decode.testing.mm`: a pymmcore-plus core with the simulated SMLM camera and laser
  (and the DemoCamera adapters when installed), for the Micro-Manager source's tests.
- :mod:`live_decode.testing.control_loop`: the density controller closed around the simulated
  microscope in one process (no network), for the controller's tests and benchmarks.
- :mod:`live_decode.testing.dask_faults`: a Dask worker plugin that kills a chunk's worker once.

An import-linter contract (``pyproject.toml``) forbids every runtime room, ``cli`` included,
from importing it.
"""
