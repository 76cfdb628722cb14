"""Fixtures for transport tests: a context torn down with linger 0, and objects closed first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

import pytest
import zmq

from live_decode.messages import CameraMeta


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def closing(ctx: zmq.Context[zmq.Socket[bytes]]) -> Iterator[Callable[[C], C]]:
    """``closing(obj)`` registers a socket wrapper to close (reverse order) before the context."""
    opened: list[Closable] = []

    def register(obj: C) -> C:
        opened.append(obj)
        return obj

    yield register
    for obj in reversed(opened):
        obj.close()


@pytest.fixture
def camera() -> CameraMeta:
    return CameraMeta(
        pixel_size_nm=100.0,
        baseline_adu=100.0,
        e_per_adu=45.0,
        em_gain=300.0,
        qe=0.9,
        exposure_ms=20.0,
        spurious_charge_e=0.002,
        extra={"name": "sim", "roi": [0, 0, 64, 64]},
    )


LOOPBACK = "tcp://127.0.0.1:*"
