"""fit's recount rounds: when they come, the frames they count, their record (a round trip)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile

from live_decode.config import load_config
from live_decode.errors import LiveDecodeError
from live_decode.pipeline.fit_recount import (
    RecountRound,
    before_round,
    check_rounds,
    read_pending,
    read_rounds,
    recounted_density,
    rewrite_setup,
    sample_blocks,
    stage_ends,
    write_rounds,
)
from live_decode.training.recount import CountCurve


def test_rounds_come_after_each_quarter_and_their_number_is_checked() -> None:
    assert stage_ends(1000, 1) == [250]
    assert stage_ends(1000, 3) == [250, 500, 750]
    assert stage_ends(2, 1) == [1]  # at least one step first
    assert stage_ends(1000, 0) == []
    check_rounds(0)
    with pytest.raises(LiveDecodeError, match="--recount-rounds 4"):
        check_rounds(4)


def test_the_sample_is_blocks_of_consecutive_frames_spread_over_the_series(
    tmp_path: Path,
) -> None:
    frames = np.repeat(np.arange(300, dtype=np.uint16), 16).reshape(300, 4, 4)
    tifffile.imwrite(tmp_path / "a.tif", frames[:250])
    tifffile.imwrite(tmp_path / "b.tif", frames[250:])
    blocks = sample_blocks([tmp_path / "a.tif", tmp_path / "b.tif"], frames=200, blocks=4)
    assert [(int(b[0, 0, 0]), len(b)) for b in blocks] == [(0, 50), (83, 50), (167, 50), (250, 50)]
    for b in blocks:  # consecutive frames
        np.testing.assert_array_equal(np.diff(b[:, 0, 0].astype(int)), 1)
    (whole,) = sample_blocks([tmp_path / "a.tif"], frames=400)
    assert len(whole) == 250


def _dense_round() -> RecountRound:
    curve = CountCurve(*(np.array([1.0, 2.0]) for _ in range(4)))
    return RecountRound(
        round=1,
        step=250,
        frames=200,
        raw_per_um2=3.0,
        raw_p95_per_um2=4.0,
        corrected_per_um2=5.5,
        corrected_p95_per_um2=7.0,
        corrected_p5_per_um2=4.0,
        density_before=4.26,
        density_after=5.5,
        range_before=(0.0, 6.0),
        range_after=(0.0, 10.5),
        curve=curve,
        seconds=3.0,
    )


def test_a_round_survives_its_file(tmp_path: Path) -> None:
    done = _dense_round()
    assert done.widened and done.changed
    assert "0–6 → 0–10.5 µm⁻²" in done.summary()
    write_rounds(tmp_path, [done])
    (back,) = read_rounds(tmp_path)
    assert back.to_dict() == done.to_dict()
    assert read_pending(tmp_path) is None
    assert (
        read_rounds(tmp_path / "elsewhere") == [] and read_pending(tmp_path / "elsewhere") is None
    )
    write_rounds(tmp_path, [done], pending=replace(done, round=2))  # round 2 being applied
    assert [r.round for r in read_rounds(tmp_path)] == [1]
    pending = read_pending(tmp_path)
    assert pending is not None and pending.to_dict() == replace(done, round=2).to_dict()


def test_the_setup_is_rewritten_once_per_round_and_the_old_one_recovered(tmp_path: Path) -> None:
    done = _dense_round()
    setup = tmp_path / "setup.yaml"
    setup.write_text(
        "# calibrated\nemitters:\n  density_per_um2: 4.26\n"
        "training:\n  density_range_per_um2: [0.0, 6.0]\n",
        encoding="utf-8",
    )
    rewrite_setup(setup, done)
    once = setup.read_text(encoding="utf-8")
    rewrite_setup(setup, done)  # a resumed fit finishing the round
    assert setup.read_text(encoding="utf-8") == once
    assert once.startswith("# calibrated\n") and once.count("recount round 1") == 1
    assert list(tmp_path.iterdir()) == [setup]  # no temporary file left
    cfg = load_config(setup)
    assert cfg.emitters.density_per_um2 == 5.5
    assert cfg.training.density_range_per_um2 == (0.0, 10.5)
    before = before_round(cfg, done)
    assert before.emitters.density_per_um2 == 4.26
    assert before.training.density_range_per_um2 == (0.0, 6.0)
    assert before.model_dump(exclude={"emitters", "training"}) == cfg.model_dump(
        exclude={"emitters", "training"}
    )


@pytest.mark.parametrize(
    ("setup", "corrected", "after", "why"),
    [
        (5.3, 7.9, 7.9, None),  # dense: the spot count undercounts, the network's replaces it
        (1.3, 1.6, 1.6, None),  # above the dense limit and > 15 % more
        (0.81, 0.97, 0.81, "below 1.5 µm⁻²"),  # sparse: calibrate's is the better one
        (1.0, 1.45, 1.0, "below 1.5 µm⁻²"),
        (4.26, 3.0, 4.26, "fewer than calibrate"),  # the recount only raises an undercount
        (3.6, 3.4, 3.6, None),  # within 15 %: nothing to say
        (5.0, 5.7, 5.0, None),
    ],
)
def test_the_setup_density_follows_the_count_only_where_the_spot_count_undercounts(
    setup: float, corrected: float, after: float, why: str | None
) -> None:
    density, reason = recounted_density(setup, corrected)
    assert density == after
    assert reason is None if why is None else why in str(reason)


def test_a_sparse_round_keeps_the_density_and_says_why() -> None:
    curve = CountCurve(*(np.array([1.0, 2.0]) for _ in range(4)))
    kept = RecountRound(
        round=1,
        step=40,
        frames=60,
        raw_per_um2=0.9,
        raw_p95_per_um2=1.4,
        corrected_per_um2=0.97,
        corrected_p95_per_um2=1.5,
        corrected_p5_per_um2=0.5,
        density_before=0.81,
        density_after=0.81,
        range_before=(0.0, 6.0),
        range_after=(0.0, 6.0),
        curve=curve,
        seconds=1.0,
    )
    assert not kept.changed
    assert "setup density 0.81 → 0.81 (below 1.5 µm⁻² calibrate's" in kept.summary()
