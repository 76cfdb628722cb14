"""A run's four endpoints are distinct, the configured ports kept and never handed out again."""

from __future__ import annotations

from live_decode.config import config_from_dict
from live_decode.pipeline.build import _free_ports, endpoints_for


def _ports(cfg_data: dict[str, object]) -> list[int]:
    e = endpoints_for(config_from_dict(cfg_data))
    return [int(x.rsplit(":", 1)[1]) for x in (e.frames, e.results, e.preview, e.control)]


def test_free_ports_are_distinct_across_many_runs() -> None:
    # Before: each port was probed and released in turn, and the OS could hand the same port
    # out twice (a CI run got preview == control and failed to bind).
    for _ in range(200):
        assert len(set(_ports({}))) == 4


def test_configured_ports_are_kept_and_not_reused() -> None:
    fixed = _free_ports("127.0.0.1", 1, set())[0]
    for _ in range(50):
        ports = _ports({"transport": {"frames_port": fixed}})
        assert ports[0] == fixed and len(set(ports)) == 4


def test_free_ports_skip_the_taken_ones() -> None:
    taken = set(_free_ports("127.0.0.1", 3, set()))
    assert not taken & set(_free_ports("127.0.0.1", 5, taken))
