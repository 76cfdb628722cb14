"""The one device resolver: auto/cpu/cuda[:N], and errors that say what to pass."""

from __future__ import annotations

import pytest
import torch

from live_decode.errors import ConfigError
from live_decode.model.device import resolve_device


def test_auto_and_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "meta"])
def test_a_bad_name_is_a_config_error_naming_the_choices(name: str) -> None:
    with pytest.raises(ConfigError, match="auto, cpu, cuda or cuda:N"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_without_cuda_says_use_cpu() -> None:
    with pytest.raises(ConfigError, match="use --device cpu"):
        resolve_device("cuda:0")
