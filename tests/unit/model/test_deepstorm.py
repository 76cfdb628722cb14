"""Deep-STORM: forward shapes, the loss, and localizations from a density image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from live_decode.config import DeepStormConfig
from live_decode.model.deepstorm import (
    DeepStormNet,
    blur,
    deepstorm_loss,
    gaussian_kernel,
    spike_image,
)
from live_decode.model.deepstorm_post import localize_density


@pytest.mark.parametrize(("upsampling", "side"), [(2, 12), (4, 10), (8, 7)])
def test_forward_maps_a_frame_to_its_upsampled_grid(upsampling: int, side: int) -> None:
    net = DeepStormNet(filters=2, upsampling=upsampling).eval()
    pad = -(side * upsampling) % 8 // upsampling  # camera px to a multiple of 8 super-res px
    side_in = side + pad if (side * upsampling) % 8 else side
    with torch.no_grad():
        out = net(torch.randn(3, 1, side_in, side_in))
    assert out.shape == (3, 1, side_in * upsampling, side_in * upsampling)


def test_bad_upsampling_is_refused() -> None:
    with pytest.raises(ValueError, match="2, 4 or 8"):
        DeepStormNet(4, upsampling=3)


def test_gaussian_kernel_is_normalised_and_blur_keeps_mass() -> None:
    k = gaussian_kernel(1.0)
    assert k.shape == (1, 1, 7, 7) and float(k.sum()) == pytest.approx(1.0)
    img = torch.zeros(1, 1, 21, 21)
    img[0, 0, 10, 10] = 5.0
    assert float(blur(img, 1.0).sum()) == pytest.approx(5.0, rel=1e-5)


def test_spikes_land_on_the_super_resolution_pixel_of_each_emitter() -> None:
    xy = torch.tensor([[1.30, 2.60], [0.0, 0.0], [9.9, 1.0], [-0.1, 1.0]])  # last: outside
    sample = torch.tensor([0, 1, 1, 0])
    img = spike_image(xy, sample, 2, (4, 10), upsampling=4, height=100.0)
    assert img.shape == (2, 1, 16, 40)
    assert float(img[0, 0, 10, 5]) == 100.0  # row ⌊2.6·4⌋ = 10, column ⌊1.3·4⌋ = 5
    assert float(img[1, 0, 0, 0]) == 100.0 and float(img[1, 0, 4, 39]) == 100.0
    assert float(img.sum()) == 300.0


def test_loss_is_zero_only_for_the_target_without_sparsity_and_decreases_in_training() -> None:
    cfg = DeepStormConfig(filters=4, upsampling=2, l1_weight=0.0)
    spikes = torch.zeros(2, 1, 16, 16)
    spikes[0, 0, 5, 7] = 100.0
    assert float(deepstorm_loss(spikes, spikes, cfg).sum()) == 0.0
    sparse = cfg.model_copy(update={"l1_weight": 1.0})
    assert float(deepstorm_loss(spikes, spikes, sparse)[0]) == pytest.approx(100.0 / 256)

    torch.manual_seed(0)
    net = DeepStormNet(filters=4, upsampling=2)
    x = torch.zeros(4, 1, 8, 8)
    targets = torch.zeros(4, 1, 16, 16)
    for b, (r, c) in enumerate([(2, 3), (5, 5), (1, 6), (6, 1)]):
        x[b, 0, r, c] = 5.0  # a bright camera pixel → a spike in its 2×2 block
        targets[b, 0, 2 * r, 2 * c] = 100.0
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = deepstorm_loss(net(x), targets, sparse).mean()
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_local_maxima_give_the_emitters_of_a_synthetic_density_image() -> None:
    cfg = DeepStormConfig(upsampling=4, spike_height=100.0, threshold=0.3)
    out = torch.zeros(2, 1, 64, 64)
    # Frame 0: one spike split over two pixels (centroid between them) and one faint blob.
    out[0, 0, 10, 20] = 60.0
    out[0, 0, 10, 21] = 40.0
    out[0, 0, 40, 40] = 20.0  # below 0.3 × 100: not a localization
    # Frame 1: a spike spread over 3×3 (mass 90) and noise that is negative (clamped away).
    out[1, 0, 30:33, 50:53] = 10.0
    out[1, 0, 5, 5] = -50.0
    locs = localize_density(out, np.array([7, 8]), cfg, pixel_size_nm=100.0)
    assert locs["frame"].tolist() == [7, 8]
    px = 100.0 / 4
    assert locs["x_nm"][0] == pytest.approx((20 + 0.5 + 0.4) * px)
    assert locs["y_nm"][0] == pytest.approx((10 + 0.5) * px)
    assert locs["x_nm"][1] == pytest.approx((51 + 0.5) * px)
    assert locs["y_nm"][1] == pytest.approx((31 + 0.5) * px)
    assert locs["prob"].tolist() == pytest.approx([1.0, 0.9])
    assert np.isnan(locs["photons"]).all() and (locs["z_nm"] == 0).all()


def test_two_spikes_closer_than_a_camera_pixel_are_one_localization() -> None:
    cfg = DeepStormConfig(upsampling=4, threshold=0.3)
    out = torch.zeros(1, 1, 32, 32)
    out[0, 0, 10, 10] = 100.0
    out[0, 0, 10, 12] = 80.0  # 2 super-res px (50 nm) away: within the (u+1)² window
    out[0, 0, 10, 20] = 80.0  # 10 px (250 nm) away: its own localization
    locs = localize_density(out, np.array([0]), cfg, pixel_size_nm=100.0)
    assert len(locs) == 2


def test_the_image_drops_the_haze_below_the_noise_floor_and_keeps_emitters() -> None:
    from live_decode.model.checkpoint import bundled_model_path
    from live_decode.pipeline.kinds import LocalizerOptions, load_localizer

    loc = load_localizer(
        bundled_model_path("deepstorm_demo"), LocalizerOptions(torch.device("cpu"))
    )
    cfg = loc.config.model.deepstorm
    assert cfg.image_floor == 0.01  # the default: 1 % of a spike per pixel and frame
    out = torch.full((2, 1, 32, 32), 0.5 * cfg.image_floor * cfg.spike_height)  # a faint haze
    out[0, 0, 10:13, 20:23] = cfg.spike_height / 9  # one emitter, spread over 3×3 pixels
    out[1, 0, 5, 5] = -3.0  # negative density is no density
    image = loc.image(out)
    assert image is not None and image.shape == (2, 32, 32)
    assert float(image[0].sum()) == pytest.approx(cfg.spike_height)  # the emitter, whole
    assert float(image[1].sum()) == 0.0  # haze alone sums to nothing over the frames
    # Summed over a long acquisition the haze would otherwise outweigh the emitter.
    assert float(out[0].clamp(min=0).sum()) > 1.5 * cfg.spike_height
