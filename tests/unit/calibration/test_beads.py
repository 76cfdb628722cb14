"""Bead z-stacks: σx(z), σy(z), the astigmatic fit and the spline PSF, recovered from stacks
simulated with the project's own astigmatic PSF and camera noise.

Each stack holds 9 beads at random sub-pixel positions, each with its own focus (±20 nm, a tilted
coverslip), on 31 planes 50 nm apart that are not centred on the focus; the issue's tolerance is
10 % on σx(z), σy(z) over the z range.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tifffile
import torch
import yaml

from live_decode.calibration.bead_calibration import (
    BeadCalibration,
    calibrate_beads,
    check_bead_options,
)
from live_decode.calibration.bead_psf import astigmatic_sigmas, model_psf, residual
from live_decode.calibration.beads import measure_beads
from live_decode.calibration.camera_fit import CameraEstimate
from live_decode.calibration.spots import fit_gaussians
from live_decode.config import CameraConfig, SplinePsfConfig, config_from_dict, load_config
from live_decode.errors import CalibrationError
from live_decode.simulation.camera import Camera
from live_decode.simulation.emitters import Emitters
from live_decode.simulation.psf import AstigmaticPSF, render
from live_decode.simulation.spline_psf import SplinePSF

PX_NM = 100.0
Z_STEP_NM = 50.0
CASES: dict[str, dict[str, Any]] = {
    # EMCCD, the stack's middle plane 40 nm above the focus.
    "emccd": dict(
        camera=dict(
            kind="emccd",
            pixel_size_nm=PX_NM,
            baseline_adu=480.0,
            e_per_adu=12.0,
            em_gain=150.0,
            qe=0.9,
            read_noise_e=60.0,
        ),
        psf=(110.0, 250.0, 400.0),
        photons=20000.0,
        bg=20.0,
        z_offset_nm=40.0,
        z_sign=1.0,
    ),
    # sCMOS, dimmer beads, another astigmatism, the stage stepped downwards (z decreasing).
    "scmos_down": dict(
        camera=dict(
            kind="scmos",
            pixel_size_nm=PX_NM,
            baseline_adu=100.0,
            e_per_adu=0.46,
            em_gain=1.0,
            qe=0.8,
            read_noise_e=1.6,
        ),
        psf=(130.0, 300.0, 450.0),
        photons=8000.0,
        bg=10.0,
        z_offset_nm=-30.0,
        z_sign=-1.0,
    ),
}


def _camera(case: dict[str, Any]) -> CameraConfig:
    return config_from_dict({"camera": case["camera"]}).camera


def _estimate(cam: CameraConfig) -> CameraEstimate:
    """The camera as ``calibrate`` would have estimated it from the movie (exactly)."""
    gain = (cam.em_gain if cam.kind == "emccd" else 1.0) * cam.qe / cam.e_per_adu
    return CameraEstimate(
        kind=cam.kind,
        baseline_adu=cam.baseline_adu,
        adu_per_photon=gain,
        read_noise_adu=None,
        slope_adu=gain,
        intercept_adu2=0.0,
        mean_range_adu=(cam.baseline_adu, cam.baseline_adu),
        n_samples=0,
        baseline_source="given",
    )


def simulate_stack(
    case: dict[str, Any],
    planes: int = 31,
    fov_px: int = 120,
    n_side: int = 3,
    seed: int = 1,
    aggregate: bool = False,
    first_focus_nm: float = 0.0,
) -> npt.NDArray[np.uint16]:
    """(planes, fov, fov) ADU: n_side² beads on a jittered grid, sub-pixel positions; with
    ``aggregate``, the first bead is two beads 1.6 px apart; its focus moved by
    ``first_focus_nm``."""
    rng = np.random.default_rng(seed)
    s0, c, d = case["psf"]
    psf = AstigmaticPSF(s0 / PX_NM, c, d, roi_px=31)
    spacing = fov_px / n_side
    grid = (np.arange(n_side) + 0.5) * spacing
    xy = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2) + rng.uniform(-3, 3, (n_side**2, 2))
    focus_nm = rng.uniform(-20.0, 20.0, len(xy))
    focus_nm[0] += first_focus_nm
    if aggregate:
        xy = np.concatenate([xy, xy[:1] + np.array([1.2, 1.0])])
        focus_nm = np.concatenate([focus_nm, focus_nm[:1]])
    z_planes = case["z_sign"] * (
        (np.arange(planes) - planes // 2) * Z_STEP_NM + case["z_offset_nm"]
    )
    n = len(xy)
    xyz = np.concatenate(
        [np.repeat(xy[None], planes, 0), (z_planes[:, None] - focus_nm[None])[..., None]], -1
    ).reshape(-1, 3)
    emitters = Emitters(
        xyz=torch.tensor(xyz, dtype=torch.float32),
        photons=torch.full((planes * n,), case["photons"]),
        frame=torch.arange(planes).repeat_interleave(n),
        id=torch.arange(n).repeat(planes),
    )
    photons = render(psf, emitters, planes, (fov_px, fov_px)) + case["bg"]
    adu = Camera(_camera(case)).forward(photons, torch.Generator().manual_seed(seed))
    return adu.numpy().astype(np.uint16)


@pytest.fixture(scope="module", params=sorted(CASES))
def calibrated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], BeadCalibration]:
    case = CASES[request.param]
    out = tmp_path_factory.mktemp(request.param)
    path = out / "beads.tif"
    tifffile.imwrite(path, simulate_stack(case))
    cam = _estimate(_camera(case))
    return case, calibrate_beads(path, Z_STEP_NM, PX_NM, out / "setup", cam)


def test_sigma_x_and_y_of_z_are_recovered_within_10_percent(
    calibrated: tuple[dict[str, Any], BeadCalibration],
) -> None:
    case, beads = calibrated
    st = beads.stack
    assert st.n_beads == 9
    lo, hi = st.z_range_nm
    assert lo <= -600 and hi >= 600  # ±(15 − 1) planes, less the foci's spread
    true_x, true_y = astigmatic_sigmas(st.z_nm, *case["psf"])
    err_x = st.sigma_x_px * PX_NM / true_x - 1.0
    err_y = st.sigma_y_px * PX_NM / true_y - 1.0
    assert np.all(np.isfinite(err_x)) and np.all(np.isfinite(err_y))
    assert np.abs(err_x).max() < 0.10 and np.abs(err_y).max() < 0.10
    assert np.sqrt(np.mean(err_x**2 + err_y**2) / 2) < 0.03
    assert beads.z_flipped == (case["z_sign"] < 0)


def test_the_fitted_astigmatic_config_reproduces_the_curves(
    calibrated: tuple[dict[str, Any], BeadCalibration],
) -> None:
    case, beads = calibrated
    cfg = beads.astigmatic.config
    fitted = (cfg.sigma0_nm, cfg.focal_offset_nm, cfg.depth_of_field_nm)
    np.testing.assert_allclose(fitted, case["psf"], rtol=0.05)
    z = np.linspace(*beads.z_range_nm, 41)
    for got, want in zip(
        astigmatic_sigmas(z, *fitted), astigmatic_sigmas(z, *case["psf"]), strict=True
    ):
        assert np.abs(got / want - 1.0).max() < 0.05
    assert beads.astigmatic.rms_relative_error < 0.03
    # The config drives the project's own PSF: it explains the beads down to the photon noise.
    r = beads.residuals["astigmatic"]
    assert r.chi2_per_px < 1.5
    # ``--psf astigmatic`` writes this config as the setup's PSF section.
    section = replace(beads, kind="astigmatic").psf_section(relative_to=Path("/"))
    assert config_from_dict({"psf": section}).psf == cfg


def test_the_spline_loads_with_the_project_loader_and_explains_the_beads(
    calibrated: tuple[dict[str, Any], BeadCalibration],
) -> None:
    case, beads = calibrated
    cfg = beads.spline
    assert cfg.calibration.is_file() and cfg.z_step_nm == Z_STEP_NM
    psf = SplinePSF.from_config(cfg)
    assert psf.z_range_nm == pytest.approx(beads.z_range_nm)
    r = beads.residuals["spline"]
    assert r.unexplained < 3 * r.noise_floor and r.unexplained < 0.03
    assert 0.8 < r.chi2_per_px < 1.3
    # The residual can fail: a PSF 30 % too wide leaves far more than noise.
    s0, c, d = case["psf"]
    wrong = config_from_dict(
        {
            "psf": {
                "kind": "astigmatic",
                "sigma0_nm": 1.3 * s0,
                "focal_offset_nm": c,
                "depth_of_field_nm": d,
            }
        }
    ).psf
    excess = 2.0 if case["camera"]["kind"] == "emccd" else 1.0
    bad = residual(beads.stack, model_psf(wrong, PX_NM), beads.z_range_nm, excess)
    assert bad.chi2_per_px > 3 * r.chi2_per_px and bad.unexplained > 3 * r.unexplained
    # The spline's own σ(z), rendered off the voxel grid (sub-pixel x, y; z between planes).
    z = np.array([-525.0, -210.0, 0.0, 335.0, 575.0])
    xyz = torch.tensor(np.stack([np.full(5, 10.3), np.full(5, 10.8), z], 1))
    values = psf.roi(xyz)[0].numpy()
    p, ok = fit_gaussians(values * 1e4)
    assert ok.all()
    true_x, true_y = astigmatic_sigmas(z, *case["psf"])
    np.testing.assert_allclose(p[:, 4] * PX_NM, true_x, rtol=0.1)
    np.testing.assert_allclose(p[:, 5] * PX_NM, true_y, rtol=0.1)


def test_the_bead_row_of_the_report_draws_curves_montage_and_residuals(
    calibrated: tuple[dict[str, Any], BeadCalibration], tmp_path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from live_decode.calibration.bead_report import plot_bead_row

    _, beads = calibrated
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.5))
    plot_bead_row(ax, beads)
    assert len(ax[0].lines) == 4 and len(ax[1].images) == 1 and len(ax[2].lines) == 3
    image = ax[1].images[0].get_array()
    assert image.shape == (3 * beads.stack.roi_px, 3 * beads.stack.roi_px)
    fig.savefig(tmp_path / "row.png", dpi=50)
    plt.close(fig)
    assert (tmp_path / "row.png").stat().st_size > 5_000


# ---------------------------------------------------------------------------- bad input
def test_a_stack_without_beads_is_refused_saying_what_to_record() -> None:
    noise = np.random.default_rng(0).poisson(20.0, (31, 64, 64)).astype(np.float64)
    with pytest.raises(CalibrationError, match=r"no isolated bead.*sparse bright beads"):
        measure_beads(noise, Z_STEP_NM, baseline_adu=0.0)


def test_crowded_beads_are_not_isolated() -> None:
    stack = simulate_stack(CASES["emccd"], planes=15, fov_px=64, n_side=4)
    with pytest.raises(CalibrationError, match=r"no isolated bead found \(\d+ bright maxima"):
        measure_beads(stack.astype(np.float64), Z_STEP_NM, baseline_adu=480.0)


def test_too_few_planes_and_a_missing_z_step_are_refused(tmp_path: Path) -> None:
    stack = simulate_stack(CASES["emccd"], planes=5).astype(np.float64)
    with pytest.raises(CalibrationError, match=r"5 plane.*at least 9 planes"):
        measure_beads(stack, Z_STEP_NM)
    with pytest.raises(CalibrationError, match="pass --z-step-nm"):
        measure_beads(stack, None)
    with pytest.raises(CalibrationError, match="pass it with --beads"):
        check_bead_options(None, 50.0, None)
    with pytest.raises(CalibrationError, match="--z-step-nm must be a positive"):
        measure_beads(stack, -50.0)
    tifffile.imwrite(tmp_path / "plain.tif", stack.astype(np.uint16))
    with pytest.raises(CalibrationError, match="does not record it: pass --z-step-nm"):
        check_bead_options(tmp_path / "plain.tif", None, None)


@pytest.mark.parametrize(
    ("writer", "expected"),
    [
        ({"imagej": True, "metadata": {"axes": "ZYX", "spacing": 0.05, "unit": "micron"}}, 50.0),
        ({"ome": True, "metadata": {"axes": "ZYX", "PhysicalSizeZ": 0.04}}, 40.0),
    ],
    ids=["imagej", "ome"],
)
def test_the_z_step_is_read_from_the_file_where_it_says(
    tmp_path: Path, writer: dict[str, Any], expected: float
) -> None:
    path = tmp_path / "beads.tif"
    tifffile.imwrite(path, np.zeros((9, 16, 16), np.uint16), **writer)
    kind, step, source = check_bead_options(path, None, None)
    assert (kind, step) == ("spline", pytest.approx(expected))
    assert source.startswith("file:")
    assert check_bead_options(path, 30.0, "astigmatic") == (
        "astigmatic",
        30.0,
        "given (--z-step-nm)",
    )


def test_a_focus_at_the_end_of_the_stack_is_refused() -> None:
    case = {**CASES["emccd"], "z_offset_nm": 600.0}  # focus 12 planes below the middle
    stack = simulate_stack(case, planes=31).astype(np.float64)
    with pytest.raises(CalibrationError, match="planes on each side of focus"):
        measure_beads(stack, Z_STEP_NM, baseline_adu=480.0)


# ---------------------------------------------------------------------------- calibrate --beads
def _blinking_movie(case: dict[str, Any], frames: int = 200) -> npt.NDArray[np.uint16]:
    s0, c, d = case["psf"]
    cfg = config_from_dict(
        {
            "camera": case["camera"],
            "psf": {
                "kind": "astigmatic",
                "sigma0_nm": s0,
                "focal_offset_nm": c,
                "depth_of_field_nm": d,
            },
            "emitters": {"z_range_nm": [-500, 500]},
            "photophysics": {"photons_mean": 3000, "photons_sigma": 600},
            "background": {"uniform_photons": [30, 60]},
            "microscope": {"fov_px": [64, 64], "seed": 4, "laser": {"power_mw": 6.0}},
        }
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from live_decode.simulation.microscope import SimulatedMicroscope

        mic = SimulatedMicroscope(cfg)
        return np.stack([mic.next_frame().adu for _ in range(frames)])
    finally:
        torch.set_num_threads(threads)


def test_calibrate_with_beads_writes_a_3d_setup(tmp_path: Path) -> None:
    from live_decode.calibration.setup import calibrate

    case = CASES["emccd"]
    tifffile.imwrite(tmp_path / "movie.tif", _blinking_movie(case))
    tifffile.imwrite(tmp_path / "beads.tif", simulate_stack(case))
    out = tmp_path / "setup"
    result = calibrate(
        [tmp_path / "movie.tif"],
        out,
        pixel_size_nm=PX_NM,
        camera="emccd",
        refine=False,
        plot=False,  # the bead row of calibration.png is drawn in its own (faster) test
        beads=tmp_path / "beads.tif",
        z_step_nm=Z_STEP_NM,
    )
    text = (out / "setup.yaml").read_text()
    cfg = load_config(out / "setup.yaml")
    lo, hi = cfg.emitters.z_range_nm
    assert lo <= -600 and hi >= 600
    assert "calibration: beads_psf.tif" in text  # next to setup.yaml, relative
    assert isinstance(cfg.psf, SplinePsfConfig)
    assert cfg.psf.calibration == (out / "beads_psf.tif").resolve()
    assert SplinePSF.from_config(cfg.psf).z_range_nm == pytest.approx((lo, hi))
    report = yaml.safe_load((out / "calibration.json").read_text())
    beads = report["beads"]
    assert beads["beads"] == 9 and beads["psf_used"] == "spline"
    assert len(beads["sigma_x_nm"]) == len(beads["z_nm"])
    assert beads["residual"]["spline"]["unexplained"] < 0.03
    assert result.beads is not None and result.files["psf_spline"] == cfg.psf.calibration


def test_an_aggregate_is_left_out_and_the_rest_still_recover_the_psf() -> None:
    case = CASES["emccd"]
    stack = simulate_stack(case, aggregate=True).astype(np.float64)
    st = measure_beads(stack, Z_STEP_NM, baseline_adu=480.0, adu_per_photon=11.25)
    assert st.n_beads == 8
    assert any("1 bead(s) at x, y" in w and "differ in shape" in w for w in st.warnings)
    true_x, true_y = astigmatic_sigmas(st.z_nm, *case["psf"])
    assert np.abs(st.sigma_x_px * PX_NM / true_x - 1).max() < 0.10
    assert np.abs(st.sigma_y_px * PX_NM / true_y - 1).max() < 0.10


def test_hot_pixels_cost_no_bead_and_a_bead_off_the_common_focus_is_left_out() -> None:
    case = CASES["emccd"]
    stack = simulate_stack(case, first_focus_nm=450.0).astype(np.float64)
    stack[:, 40, 40] += 5000 * 11.25  # hot pixels: as bright as a bead in every plane
    stack[:, 80, 41] += 3000 * 11.25
    st = measure_beads(stack, Z_STEP_NM, baseline_adu=480.0, adu_per_photon=11.25)
    assert st.n_beads == 8
    assert any("1 spot(s) at x, y" in w and "focus more than 300 nm" in w for w in st.warnings)
    assert st.z_range_nm[1] >= 600  # the far bead does not shorten the shared z range
    true_x, true_y = astigmatic_sigmas(st.z_nm, *case["psf"])
    assert np.abs(st.sigma_x_px * PX_NM / true_x - 1).max() < 0.10
    assert np.abs(st.sigma_y_px * PX_NM / true_y - 1).max() < 0.10
