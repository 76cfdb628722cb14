from __future__ import annotations

import pytest
import torch

from live_decode.model.network import DecodeNet, count_parameters, pad_to_multiple


def test_paper_size_matches_published_parameter_count() -> None:
    # DECODE's SigmaMUNet: 2,199,418 trainable parameters at 48 filters.
    assert count_parameters(DecodeNet(48)) == 2_199_418


def test_full_forward_equals_two_stages_chained() -> None:
    torch.manual_seed(0)
    net = DecodeNet(8).eval()
    x = torch.randn(2, 3, 16, 20)
    with torch.no_grad():
        full = net(x)
        feats = [net.frame_features(x[:, i : i + 1]) for i in range(3)]
        staged = net.context(*feats)
    torch.testing.assert_close(full, staged, rtol=1e-5, atol=1e-6)


def test_single_frame_model_ignores_neighbours() -> None:
    torch.manual_seed(0)
    net = DecodeNet(8, temporal_context=False).eval()
    x = torch.randn(1, 3, 16, 16)
    y = x.clone()
    y[:, 0] += 5.0
    y[:, 2] -= 5.0
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(y))


def test_output_ranges_and_initial_p() -> None:
    net = DecodeNet(8).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 10, 16, 16)
    assert out[:, 0].max() < 0.05  # negative initial bias: p starts near 0.0025
    assert (out[:, [0, 1, 9]] > 0).all() and (out[:, [0, 1, 9]] < 1).all()
    assert (out[:, 2:5].abs() <= 1).all()
    assert (out[:, 5:9] > 0).all() and (out[:, 5:9] < 3.002).all()


def test_2d_model_fixes_z() -> None:
    net = DecodeNet(8, predict_z=False).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 8, 8))
    assert (out[:, 4] == 0).all()
    assert torch.allclose(out[:, 8], torch.full_like(out[:, 8], 0.1))


@pytest.mark.parametrize(("h", "w"), [(16, 16), (17, 18), (30, 41)])
def test_padding_keeps_pixels_in_place(h: int, w: int) -> None:
    x = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    padded = pad_to_multiple(x, 4)
    assert padded.shape[-2] % 4 == 0 and padded.shape[-1] % 4 == 0
    torch.testing.assert_close(padded[..., :h, :w], x)
    net = DecodeNet(4).eval()
    with torch.no_grad():
        out = net(pad_to_multiple(torch.randn(1, 3, h, w)))
    assert out.shape[-2:] == padded.shape[-2:]


def test_temporal_model_rejects_wrong_frame_count() -> None:
    with pytest.raises(ValueError, match="3 frames"):
        DecodeNet(4)(torch.zeros(1, 2, 8, 8))
