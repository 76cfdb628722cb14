"""The model seam: DECODE and Deep-STORM both implement NetworkLocalizer; kinds and plugins."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from live_decode.config import Config, load_config
from live_decode.errors import ModelCardError
from live_decode.inference.deepstorm import DeepStormLocalizer
from live_decode.inference.engine import Localizer
from live_decode.inference.offline import localize_movie
from live_decode.inference.processor import StreamProcessor
from live_decode.messages import LOC_DTYPE, CameraMeta, EosMsg, FrameMsg, GapMsg
from live_decode.model.card import card_path, read_card
from live_decode.model.checkpoint import bundled_model_path, make_card, save_model
from live_decode.model.deepstorm import DeepStormNet
from live_decode.model.network import DecodeNet
from live_decode.model.seam import NetworkLocalizer
from live_decode.pipeline.build import DEMO_CONFIG
from live_decode.pipeline.kinds import (
    ENTRY_POINT_GROUP,
    LocalizerOptions,
    available_kinds,
    get_kind,
    load_localizer,
)

CAM = CameraMeta(
    pixel_size_nm=100, baseline_adu=100, e_per_adu=45, em_gain=300, qe=0.9, exposure_ms=30
)
OPTS = LocalizerOptions(torch.device("cpu"))


def _deepstorm_config() -> Config:
    cfg = load_config(DEMO_CONFIG).model_dump(mode="json")
    cfg["model"].update(
        kind="deepstorm", temporal_context=False, deepstorm={"filters": 2, "upsampling": 4}
    )
    return Config.model_validate(cfg)


def _save_deepstorm(path: Path, kind_name: str = "deepstorm") -> Path:
    torch.manual_seed(0)
    net = DeepStormNet(2, 4)
    with torch.no_grad():
        net.out.bias.fill_(5.0)  # untrained but dense: peaks everywhere, so rows to compare
    card = make_card("ds", _deepstorm_config(), net)
    if kind_name != "deepstorm":
        from dataclasses import replace

        card = replace(card, kind=kind_name)
    save_model(path, net, card)
    return path


@pytest.fixture(scope="module", params=["decode", "deepstorm"])
def localizer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> object:
    path = tmp_path_factory.mktemp(request.param) / "m.pt"
    if request.param == "decode":
        torch.manual_seed(0)
        net = DecodeNet(4, predict_z=False)
        with torch.no_grad():
            net.head_p[-1].bias.fill_(0.0)
        save_model(path, net, make_card("dc", load_config(DEMO_CONFIG), net))
    else:
        _save_deepstorm(path)
    return load_localizer(path, OPTS)


@pytest.fixture(scope="module")
def movie() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(100, 3000, size=(6, 18, 22)).astype(np.uint16)  # no multiple of 8


class TestNetworkLocalizerContract:
    """Run against every built-in kind."""

    def test_is_a_network_localizer(self, localizer: NetworkLocalizer) -> None:
        assert isinstance(localizer, NetworkLocalizer)
        assert isinstance(localizer, Localizer | DeepStormLocalizer)
        assert localizer.card.kind in ("decode", "deepstorm")
        assert localizer.pixel_size_nm == 100.0

    def test_stages_give_localizations_and_tiles(
        self, localizer: NetworkLocalizer, movie: np.ndarray
    ) -> None:
        feats = localizer.features(localizer.to_input(movie[:3], CAM))
        assert feats.shape[0] == 3
        out = localizer.outputs(feats[[0]], feats[[1]], feats[[2]], (18, 22))
        locs = localizer.localize(out, np.array([1]))
        assert locs.dtype == LOC_DTYPE and len(locs) > 0 and (locs["frame"] == 1).all()
        assert (locs["x_nm"] >= -100).all() and (locs["x_nm"] <= 2300).all()  # ±1 px offsets
        tiles = localizer.image(out)
        u = localizer.image_upsampling
        if u is None:
            assert tiles is None and localizer.predicts_photons
        else:
            assert tiles is not None and tiles.shape == (1, 18 * u, 22 * u)
            assert float(tiles.min()) >= 0.0

    def test_streaming_equals_offline(self, localizer: NetworkLocalizer, movie: np.ndarray) -> None:
        offline = localize_movie(localizer, movie, CAM, batch_size=4)
        proc = StreamProcessor(localizer)
        msgs = [FrameMsg(i, i, CAM, movie[i]) for i in range(6)]
        got = [proc.process(msgs[:2]), proc.process([*msgs[2:], EosMsg()])]
        streamed = np.concatenate([r.locs for r in got])
        assert len(streamed) == len(offline)
        np.testing.assert_allclose(streamed["x_nm"], offline["x_nm"], atol=1e-2)  # nm
        assert proc.frames_processed == 6
        u = localizer.image_upsampling
        if u is not None:  # each batch carries its frames' tiles, summed
            assert all(r.image is not None and r.image.shape == (18 * u, 22 * u) for r in got)
        else:
            assert all(r.image is None for r in got)

    def test_a_gap_breaks_context_but_loses_no_frame(
        self, localizer: NetworkLocalizer, movie: np.ndarray
    ) -> None:
        proc = StreamProcessor(localizer)
        msgs = [FrameMsg(0, 0, CAM, movie[0]), GapMsg(1, 2), FrameMsg(3, 3, CAM, movie[3])]
        proc.process([*msgs, EosMsg()])
        assert proc.frames_processed == 2


def test_a_card_without_kind_is_decode(tmp_path: Path) -> None:
    """Cards written before kinds existed (the bundled demo_lite) load as DECODE."""
    bundled = bundled_model_path()
    assert "kind" not in json.loads(card_path(bundled).read_text(encoding="utf-8"))
    assert read_card(bundled).kind == "decode"
    assert isinstance(load_localizer(bundled, OPTS), Localizer)


def test_the_threshold_option_reaches_each_kind(tmp_path: Path) -> None:
    ds = load_localizer(
        _save_deepstorm(tmp_path / "d.pt"), LocalizerOptions(OPTS.device, threshold=0.7)
    )
    assert isinstance(ds, DeepStormLocalizer) and ds.deepstorm.threshold == 0.7
    dc = load_localizer(bundled_model_path(), LocalizerOptions(OPTS.device, threshold=0.4))
    assert isinstance(dc, Localizer) and dc.postprocess.raw_threshold == 0.4


def test_an_unknown_kind_names_the_known_ones(tmp_path: Path) -> None:
    path = _save_deepstorm(tmp_path / "x.pt", kind_name="nosuchnet")
    with pytest.raises(ModelCardError, match=r"unknown model kind 'nosuchnet'.*decode.*deepstorm"):
        load_localizer(path, OPTS)


@pytest.fixture
def plugin_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package 'fake_live_decode_plugin' installed (a dist-info on sys.path) with two entry
    points in live_decode.models: a working kind 'fakenet' and a broken one."""
    (tmp_path / "fake_live_decode_plugin.py").write_text(
        textwrap.dedent(
            """
            from live_decode.inference.deepstorm import DeepStormLocalizer
            from live_decode.model.deepstorm import build_deepstorm
            from live_decode.pipeline.kinds import ModelKind

            def _net(card):
                return build_deepstorm(card.parsed_config.model.deepstorm)

            def _localizer(net, card, opts):
                return DeepStormLocalizer(net, card, opts.device, threshold=opts.threshold)

            FAKENET = ModelKind("fakenet", _net, _localizer, None, "a test plugin")
            """
        ),
        encoding="utf-8",
    )
    dist = tmp_path / "fake_live_decode_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-live-decode-plugin\nVersion: 0.1\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nfakenet = fake_live_decode_plugin:FAKENET\n"
        "broken = fake_live_decode_plugin:NOT_THERE\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("fake_live_decode_plugin", None)


def test_a_plugin_kind_is_found_through_its_entry_point(
    plugin_on_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="live_decode.pipeline.kinds"):
        kinds = available_kinds()
    assert list(kinds)[:2] == ["decode", "deepstorm"] and "fakenet" in kinds
    assert "broken" not in kinds and "entry point broken" in caplog.text
    assert get_kind("fakenet").description == "a test plugin"
    loc = load_localizer(_save_deepstorm(tmp_path / "f.pt", kind_name="fakenet"), OPTS)
    assert isinstance(loc, NetworkLocalizer) and loc.card.kind == "fakenet"


def test_without_the_plugin_its_kind_is_unknown() -> None:
    assert "fakenet" not in available_kinds()
    with pytest.raises(ModelCardError, match=r"entry point group live_decode\.models"):
        get_kind("fakenet")
