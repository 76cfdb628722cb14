"""``ld.run``: the live pipeline as a handle (the processes ``live-decode run`` starts)."""

from __future__ import annotations

from pathlib import Path

import live_decode as ld
from live_decode.transport.sockets import parse_endpoint


def test_a_run_from_a_mapping_ends_with_its_summary(tmp_path: Path) -> None:
    cfg = ld.demo_config().model_dump(mode="json")
    cfg["control"]["mode"] = "off"
    out = tmp_path / "run"
    seen: list[int] = []
    handle = ld.run(cfg, out=out, frames=40, on_update=lambda s: seen.append(s.frames_localized))
    assert handle.wait(timeout_s=0) is None  # still running: wait(0) returns at once
    assert all(
        parse_endpoint(e).is_local for e in (handle.endpoints.frames, handle.endpoints.results)
    )
    assert (out / "config.api.yaml").is_file()  # the mapping, written for the processes
    result = handle.wait(timeout_s=180)
    assert result is not None and (result.exit_code, result.status) == (0, "completed")
    assert handle.summary == result.summary
    assert result.summary["frames_in"] == 40
    processed, dropped = result.summary["frames_processed"], result.summary["frames_dropped"]
    assert isinstance(processed, int) and isinstance(dropped, int) and processed + dropped == 40
    assert len(ld.read_locs(out / "locs.csv")) == result.summary["localizations"]
    assert seen and seen[-1] <= handle.state.frames_localized == result.summary["frames_processed"]
    assert not handle.running
