"""Fixtures shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from live_decode.config import load_config
from live_decode.model.checkpoint import make_card, save_model
from live_decode.model.network import DecodeNet
from live_decode.pipeline.build import DEMO_CONFIG


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 4-filter network for the demo camera whose detection bias gives tens of
    localizations per noisy frame: the tests measure the pipeline, not the model."""
    cfg = load_config(DEMO_CONFIG)
    torch.manual_seed(0)
    net = DecodeNet(4, temporal_context=True, predict_z=False)
    last_p = net.head_p[-1]
    assert isinstance(last_p, torch.nn.Conv2d) and last_p.bias is not None
    with torch.no_grad():
        last_p.bias.fill_(-5.0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(path, net, make_card("tiny", cfg, net))
    return path
