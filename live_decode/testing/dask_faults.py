"""A Dask worker plugin that kills its worker process once, for the retry tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin


class KillOnceOnChunk(WorkerPlugin):
    """Kill the worker (``os._exit``) when chunk ``number`` starts executing, the first time.

    The marker file records the kill, so the rescheduled task runs through; it holds the pid
    of the worker that died.
    """

    def __init__(self, number: int, marker: Path) -> None:
        self.number = number
        self.marker = marker

    def transition(self, key: object, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing" or not isinstance(key, str):
            return
        if not key.startswith("ld-chunk-") or not key.endswith(f"-{self.number}"):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(1)
