"""Fixtures: a ZeroMQ context, a synthetic run, a real control server on its own thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import zmq

from live_decode.transport.control import ControlServer

from .synthetic import LOOPBACK, ControlFixture, Ctx, RecordingSource, SyntheticRun


@pytest.fixture
def ctx() -> Iterator[Ctx]:
    context: Ctx = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def synthetic_run(ctx: Ctx) -> Iterator[SyntheticRun]:
    run = SyntheticRun(ctx)
    yield run
    run.close()


@pytest.fixture
def control_server(ctx: Ctx) -> Iterator[ControlFixture]:
    """A real ControlServer answering from its own thread."""
    source = RecordingSource()
    server = ControlServer(ctx, source, LOOPBACK)
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop, 20), daemon=True)
    thread.start()
    yield ControlFixture(source, server, server.endpoint)
    stop.set()
    thread.join(5)
    server.close()
