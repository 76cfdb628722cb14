from __future__ import annotations

from pathlib import Path

import pytest
import torch

from live_decode.config import Config
from live_decode.errors import ModelCardError
from live_decode.model.checkpoint import load_model, make_card, save_model
from live_decode.model.network import DecodeNet
from live_decode.model.scaling import Scaling
from live_decode.simulation.emitters import Emitters
from live_decode.training.targets import make_targets, rank_within_group


def test_rank_within_group() -> None:
    g = torch.tensor([2, 0, 2, 1, 0, 2])
    assert rank_within_group(g).tolist() == [0, 0, 1, 0, 1, 2]


def test_targets_are_bright_centre_frame_emitters_only() -> None:
    # Two windows of 3 frames: image index = window * 3 + t.
    em = Emitters(
        xyz=torch.tensor(
            [[1.0, 2.0, 0.0], [3.0, 4.0, 0.0], [5.0, 6.0, 0.0], [7.0, 8.0, 0.0], [9.0, 1.0, 0.0]]
        ),
        photons=torch.tensor([500.0, 500.0, 50.0, 800.0, 900.0]),
        frame=torch.tensor([1, 0, 1, 4, 4]),
        id=torch.arange(5),
    )
    bg = torch.full((2, 3, 10, 10), 10.0)
    sc = Scaling(input_offset=0, input_scale=1, photons_max=1000, bg_max=20, z_max_nm=0)
    t = make_targets(em, bg, 3, sc, min_photons=100, max_targets=8)
    assert t.mask.sum(1).tolist() == [1, 2]  # window 0: only the bright centre emitter
    assert t.params[0, 0].tolist() == pytest.approx([0.5, 1.0, 2.0, 0.0])
    assert sorted(t.params[1, :, 1].tolist()) == [7.0, 9.0]
    assert float(t.background.mean()) == pytest.approx(0.5)


def test_model_round_trip_and_card(tmp_path: Path) -> None:
    cfg = Config()
    net = DecodeNet(8, predict_z=False)
    card = make_card("t", cfg, net, training_steps=5, metrics={"jaccard": 0.5})
    save_model(tmp_path / "m.pt", net, card)
    assert (tmp_path / "m.card.json").is_file()
    net2, card2 = load_model(tmp_path / "m.pt")
    assert card2 == card
    assert card2.parsed_config == cfg
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), net2(x))
    assert "gaussian" in card2.summary()


def test_corrupt_or_foreign_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelCardError, match="cannot read"):
        load_model(bad)
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ModelCardError, match="not a live_decode model"):
        load_model(tmp_path / "foreign.pt")
    with pytest.raises(ModelCardError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_weights_that_do_not_fit_the_card_are_refused(tmp_path: Path) -> None:
    net = DecodeNet(8, predict_z=False)
    card = make_card("t", Config(), net)
    save_model(tmp_path / "m.pt", DecodeNet(4, predict_z=False), card)
    with pytest.raises(ModelCardError, match="do not fit"):
        load_model(tmp_path / "m.pt")
