"""``calibrate --beads STACK.tif --z-step-nm N``: the 3-D PSF of a setup from a bead z-stack.

The stack gives the averaged bead PSF (:mod:`~live_decode.calibration.beads`); from it come both
models (:mod:`~live_decode.calibration.bead_psf`): the cubic spline (the averaged stack itself,
saved next to ``setup.yaml`` as ``beads_psf.tif``) and the astigmatic Gaussian fitted to σx(z),
σy(z). Either goes into the setup (``--psf``, spline by default); both are reported with their
residual against the beads. The emitters' z range is the stack's (±m planes about the focus).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from live_decode.calibration.bead_psf import (
    SPLINE_FILE,
    AstigmaticFit,
    Residual,
    fit_astigmatic,
    model_psf,
    residual,
    write_spline,
)
from live_decode.calibration.beads import BeadStack, flipped, measure_beads, read_stack, summary
from live_decode.calibration.camera_fit import EXCESS_NOISE_FACTOR_SQ, CameraEstimate
from live_decode.config import AstigmaticPsfConfig, SplinePsfConfig
from live_decode.errors import CalibrationError
from live_decode.io.calibration import read_z_step_nm

BeadPsfKind = Literal["spline", "astigmatic"]
BEAD_PSF_KINDS: tuple[BeadPsfKind, ...] = ("spline", "astigmatic")


@dataclass(frozen=True)
class BeadCalibration:
    """The 3-D PSF of a bead stack: both models, their residuals, the one the setup uses."""

    source: Path
    stack: BeadStack
    pixel_size_nm: float
    astigmatic: AstigmaticFit
    spline: SplinePsfConfig
    residuals: dict[str, Residual]
    kind: BeadPsfKind
    z_flipped: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def psf(self) -> AstigmaticPsfConfig | SplinePsfConfig:
        return self.spline if self.kind == "spline" else self.astigmatic.config

    @property
    def z_range_nm(self) -> tuple[float, float]:
        return self.stack.z_range_nm

    def psf_section(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The setup's ``psf`` section; the spline file relative to ``relative_to`` if given."""
        section = self.psf.model_dump(mode="json")
        if self.kind == "spline" and relative_to is not None:
            section["calibration"] = str(self.spline.calibration.relative_to(relative_to))
        return section

    def to_dict(self) -> dict[str, Any]:
        """The figures for ``calibration.json``."""
        a = self.astigmatic
        return {
            "stack": str(self.source),
            **summary(self.stack, self.pixel_size_nm),
            "z_flipped": self.z_flipped,
            "psf_used": self.kind,
            "astigmatic_fit": {
                **a.config.model_dump(mode="json"),
                "sigma_rms_relative_error": a.rms_relative_error,
                "sigma_max_relative_error": a.max_relative_error,
            },
            "spline_file": str(self.spline.calibration),
            "residual": {k: r.to_dict() for k, r in self.residuals.items()},
        }


def check_bead_options(
    beads: Path | None, z_step_nm: float | None, kind: str | None
) -> tuple[BeadPsfKind, float | None, str]:
    """The PSF kind to write, the bead stack's z step and where it came from (given, else the
    file's metadata), or CalibrationError where the options do not go together."""
    if beads is None:
        if z_step_nm is not None or kind is not None:
            raise CalibrationError(
                "--z-step-nm and --psf describe a bead z-stack: pass it with --beads STACK.tif"
            )
        return "spline", None, ""
    if kind is not None and kind not in BEAD_PSF_KINDS:
        raise CalibrationError(f"--psf must be one of {', '.join(BEAD_PSF_KINDS)}, not {kind!r}")
    psf_kind: BeadPsfKind = "astigmatic" if kind == "astigmatic" else "spline"
    if z_step_nm is not None:
        return psf_kind, float(z_step_nm), "given (--z-step-nm)"
    if not Path(beads).is_file():
        raise CalibrationError(f"{beads}: bead stack not found; check --beads")
    try:
        found = read_z_step_nm(Path(beads))
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"{beads}: cannot read the bead stack as a TIFF ({exc})") from None
    if found is None:
        raise CalibrationError(
            f"{beads}: the bead stack's z step is needed and the file does not record it: pass "
            "--z-step-nm (the stage move between frames, nm, e.g. 50)"
        )
    return psf_kind, found[0], found[1]


def calibrate_beads(
    path: Path,
    z_step_nm: float | None,
    pixel_size_nm: float,
    out: Path,
    camera: CameraEstimate | None = None,
    kind: BeadPsfKind = "spline",
    roi_px: int = 21,
) -> BeadCalibration:
    """Measure a bead stack and write its spline file to ``out``.

    Raises
    ------
    CalibrationError
        With what to supply: the z step, more planes, beads, a focus inside the stack.
    """
    adu = read_stack(path)
    stack = measure_beads(
        adu,
        z_step_nm,
        baseline_adu=None if camera is None else camera.baseline_adu,
        adu_per_photon=1.0 if camera is None else camera.adu_per_photon,
        roi_px=roi_px,
        source=str(path),
    )
    warnings = list(stack.warnings)
    px = pixel_size_nm
    fit, flip = fit_astigmatic(stack.z_nm, stack.sigma_x_px * px, stack.sigma_y_px * px)
    if flip:
        # The config's x focus is below its y focus; a stack taken the other way round (or a
        # camera rotated by 90°) is the same PSF with z reversed.
        stack = flipped(stack)
        fit, _ = fit_astigmatic(stack.z_nm, stack.sigma_x_px * px, stack.sigma_y_px * px)
        warnings.append(
            f"{path}: x comes into focus above y in this stack; its z axis is reversed (plane 0 "
            "is the top) so that the setup's z matches the astigmatic convention (x focus at −c)"
        )
    spline = write_spline(stack, (out / SPLINE_FILE).resolve())
    excess = EXCESS_NOISE_FACTOR_SQ[camera.kind] if camera is not None else 1.0
    residuals = {
        name: residual(stack, model_psf(cfg, px), stack.z_range_nm, excess)
        for name, cfg in (("spline", spline), ("astigmatic", fit.config))
    }
    return BeadCalibration(
        source=Path(path),
        stack=stack,
        pixel_size_nm=px,
        astigmatic=fit,
        spline=spline,
        residuals=residuals,
        kind=kind,
        z_flipped=flip,
        warnings=warnings,
    )
