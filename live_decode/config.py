"""The typed configuration tree: one frozen pydantic model, loaded from YAML.

Every field carries its unit in its name. Unknown keys are errors (``extra="forbid"``), so a typo in
a YAML file is reported with the file and the key path instead of being silently ignored.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from live_decode.errors import ConfigError

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class Frozen(BaseModel):
    """Base for every config node: immutable, no unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- camera
class CameraConfig(Frozen):
    """The camera, as on its datasheet. ADU = electrons / e_per_adu + baseline."""

    kind: Literal["emccd", "scmos"] = Field("emccd", description="EMCCD (gamma EM gain) or sCMOS")
    pixel_size_nm: Positive = Field(100.0, description="back-projected pixel size in the sample")
    qe: Fraction = Field(1.0, description="quantum efficiency, photons -> photo-electrons")
    baseline_adu: NonNegative = Field(100.0, description="offset added by the ADC")
    e_per_adu: Positive = Field(45.0, description="electrons per ADU (inverse conversion gain)")
    em_gain: Annotated[float, Field(ge=1)] = Field(300.0, description="EM gain; 1 for sCMOS")
    read_noise_e: NonNegative = Field(74.4, description="read noise, electrons rms")
    spurious_charge_e: NonNegative = Field(0.002, description="clock-induced charge, e-/px/frame")
    max_adu: Annotated[int, Field(gt=0, le=65535)] = Field(65535, description="ADC saturation")

    @model_validator(mode="after")
    def _scmos_has_no_em_gain(self) -> CameraConfig:
        if self.kind == "scmos" and self.em_gain != 1.0:
            raise ValueError("an sCMOS camera has no EM gain: set em_gain: 1 (or kind: emccd)")
        return self


# --------------------------------------------------------------------------- PSF
class GaussianPsfConfig(Frozen):
    """Pixel-integrated 2-D Gaussian PSF (no z dependence); elliptical if ``sigma_y_nm`` is set."""

    kind: Literal["gaussian"] = "gaussian"
    sigma_nm: Positive = Field(130.0, description="PSF standard deviation in the sample plane")
    sigma_y_nm: Positive | None = Field(
        None,
        description="σ along y (the rows) where it differs from sigma_nm (then σ along x): a mild "
        "astigmatism of a 2-D setup; None: round",
    )
    roi_px: Annotated[int, Field(ge=5, le=101)] = Field(
        15, description="side of the square window each emitter is rendered into"
    )

    @property
    def sigma_x_y_nm(self) -> tuple[float, float]:
        """(σx, σy) in nm."""
        return self.sigma_nm, self.sigma_nm if self.sigma_y_nm is None else self.sigma_y_nm


class AstigmaticPsfConfig(Frozen):
    """Astigmatic Gaussian: sigma_x,y(z) = sigma0 * sqrt(1 + ((z -/+ focal_offset) / depth)^2)."""

    kind: Literal["astigmatic"] = "astigmatic"
    sigma0_nm: Positive = Field(110.0, description="in-focus PSF standard deviation")
    focal_offset_nm: NonNegative = Field(
        250.0, description="z of the x focus is -offset, y +offset"
    )
    depth_of_field_nm: Positive = Field(
        400.0, description="z distance over which sigma grows by √2"
    )
    roi_px: Annotated[int, Field(ge=5, le=101)] = Field(31, description="render window side")


class SplinePsfConfig(Frozen):
    """Cubic-spline PSF from a SMAP ``*_3dcal.mat`` calibration or a z-stack of voxels."""

    kind: Literal["spline"] = "spline"
    calibration: Path = Field(description="SMAP *_3dcal.mat, or a .npy/.tif z-stack (Z, Y, X)")
    z_step_nm: Positive | None = Field(
        None, description="z spacing of a z-stack file (read from the .mat file otherwise)"
    )
    roi_px: Annotated[int, Field(ge=5, le=101)] = Field(25, description="render window side")


PsfConfig = Annotated[
    GaussianPsfConfig | AstigmaticPsfConfig | SplinePsfConfig, Field(discriminator="kind")
]


# --------------------------------------------------------------------------- emitters
class FilamentConfig(Frozen):
    """Random semiflexible filaments (microtubule-like) labelled along their length."""

    count: Annotated[int, Field(ge=1)] = Field(8, description="filaments in the field of view")
    persistence_length_um: Positive = Field(5.0, description="bending stiffness")
    labels_per_um: Positive = Field(400.0, description="fluorophores per µm of filament")


class EmittersConfig(Frozen):
    """Where emitters are and how many are on per frame."""

    structure: Literal["uniform", "filaments"] = Field("uniform", description="spatial prior")
    density_per_um2: NonNegative = Field(1.0, description="mean active emitters per µm² per frame")
    z_range_nm: tuple[float, float] = Field((0.0, 0.0), description="emitters' z range (min, max)")
    filaments: FilamentConfig = FilamentConfig()

    @model_validator(mode="after")
    def _ordered_z(self) -> EmittersConfig:
        if self.z_range_nm[0] > self.z_range_nm[1]:
            raise ValueError("z_range_nm must be (min, max) with min <= max")
        return self


class PhotophysicsConfig(Frozen):
    """Blinking and activation: continuous time, in units of frames."""

    photons_mean: Positive = Field(3000.0, description="photon flux per full frame of on-time")
    photons_sigma: NonNegative = Field(600.0, description="spread of that flux between emitters")
    on_time_mean_frames: Positive = Field(2.0, description="mean of the exponential on-time")
    activation_per_frame_per_mw: NonNegative = Field(
        2e-4, description="probability rate that a dark fluorophore activates, per mW of 405 nm"
    )
    spontaneous_activation_per_frame: NonNegative = Field(
        2e-5, description="activation rate without 405 nm light"
    )
    bleach_probability: Fraction = Field(
        0.3, description="chance an on-event ends in bleaching instead of a return to dark"
    )


class BackgroundConfig(Frozen):
    """Background in photons per pixel per frame, added before the camera."""

    uniform_photons: tuple[NonNegative, NonNegative] = Field(
        (40.0, 80.0), description="per-frame level drawn uniformly from (low, high)"
    )
    variation_fraction: Annotated[float, Field(ge=0, le=1)] = Field(
        0.3, description="amplitude of the smooth spatial variation, as a fraction of the level"
    )
    variation_scale_um: Positive = Field(3.0, description="length scale of that variation")

    @model_validator(mode="after")
    def _ordered(self) -> BackgroundConfig:
        if self.uniform_photons[0] > self.uniform_photons[1]:
            raise ValueError("uniform_photons must be (low, high) with low <= high")
        return self


class LaserConfig(Frozen):
    """The 405 nm activation laser."""

    power_mw: NonNegative = Field(5.0, description="power at start")
    max_power_mw: Positive = Field(100.0, description="upper limit of the laser")

    @model_validator(mode="after")
    def _in_limits(self) -> LaserConfig:
        if self.power_mw > self.max_power_mw:
            raise ValueError("power_mw exceeds max_power_mw")
        return self


class StageDriftConfig(Frozen):
    """Stage drift of the simulated microscope: linear creep + random walk (none by default)."""

    velocity_nm_per_frame: tuple[float, float] = Field(
        (0.0, 0.0), description="steady creep (x, y), nm per frame"
    )
    random_walk_nm_per_frame: NonNegative = Field(
        0.0, description="step σ of the random walk per axis, nm per frame"
    )


class MicroscopeConfig(Frozen):
    """The simulated acquisition: field of view, timing, fluorophore pool, laser."""

    fov_px: tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]] = Field(
        (64, 64), description="(height, width) of the camera frame"
    )
    exposure_ms: Positive = Field(20.0, description="exposure per frame")
    frame_interval_ms: Positive = Field(20.0, description="time between frame starts")
    pool_per_um2: Positive = Field(
        200.0, description="fluorophores per µm² available for activation (uniform structure)"
    )
    laser: LaserConfig = LaserConfig()
    drift: StageDriftConfig = StageDriftConfig()
    seed: int = Field(0, description="random seed of the simulated microscope")

    @model_validator(mode="after")
    def _interval(self) -> MicroscopeConfig:
        if self.frame_interval_ms < self.exposure_ms:
            raise ValueError("frame_interval_ms must be >= exposure_ms")
        return self

    @property
    def frame_rate_hz(self) -> float:
        return 1000.0 / self.frame_interval_ms


# --------------------------------------------------------------------------- model + training
class DeepStormConfig(Frozen):
    """Deep-STORM (Nehme et al., Optica 2018): one frame, upsampled, to an emitter-density image.

    The paper's network has 32 filters in its first layer and upsamples ×8; a CPU model may use
    fewer filters and ×4 (its card says which).
    """

    filters: Annotated[int, Field(ge=2, le=128)] = Field(
        32, description="filters of the first encoder layer (then ×2, ×4, bottleneck ×16)"
    )
    upsampling: Literal[2, 4, 8] = Field(8, description="super-resolution pixels per camera pixel")
    spike_height: Positive = Field(100.0, description="value of one emitter's target spike")
    blur_sigma_px: Positive = Field(
        1.0, description="σ of the loss's Gaussian kernel, super-resolution pixels"
    )
    l1_weight: NonNegative = Field(1.0, description="weight of the L1 sparsity term of the loss")
    threshold: Fraction = Field(
        0.3,
        description="a local maximum is a localization when the density around it (3×3 super-"
        "resolution px) sums to at least this fraction of one emitter's spike",
    )
    image_floor: Fraction = Field(
        0.01,
        description="the network's image: density below this fraction of one emitter's spike "
        "in a pixel of one frame is noise and set to 0 before frames are summed (else a faint "
        "haze over every pixel of every frame outweighs the emitters: NMSE 0.55 → 0.16 on the "
        "demo camera at 1 µm⁻², 0.22 → 0.16 at 5 µm⁻²); 0 keeps the raw output",
    )


class ModelConfig(Frozen):
    """Network kind and size. DECODE: 'paper' = 48 filters (~2.2 M parameters), 'lite' = 24."""

    kind: str = Field(
        "decode",
        description="network: 'decode', 'deepstorm', or a kind a plugin package installs "
        "(entry point group live_decode.models)",
    )
    deepstorm: DeepStormConfig = DeepStormConfig()
    size: Literal["lite", "paper", "custom"] = "lite"
    filters: Annotated[int, Field(ge=4, le=256)] | None = Field(
        None, description="initial filters; required for size 'custom', else derived"
    )
    temporal_context: bool = Field(True, description="three frames (t-1, t, t+1) or one")

    @property
    def n_filters(self) -> int:
        if self.size == "paper":
            return 48
        if self.size == "lite":
            return 24
        if self.filters is None:
            raise ValueError("model.size 'custom' needs model.filters")
        return self.filters


class PostprocessConfig(Frozen):
    """Spatial integration of the detection map (DECODE's SpatialIntegration)."""

    raw_threshold: Fraction = Field(0.1, description="candidate and final detection threshold")
    split_threshold: Fraction = Field(0.6, description="second emitter in a neighbouring pixel")


Share = Annotated[float, Field(ge=0, le=1)]
IntRange = tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]


class StructuredSamplesConfig(Frozen):
    """Training windows whose emitters lie on filaments or in clusters (the rest: uniform).

    A window keeps its drawn mean density; only where its emitters are changes, so a structured
    window is locally far denser than its average, as real samples are.
    """

    fraction: Share = Field(0.0, description="share of the training windows that are structured")
    filament_share: Share = Field(
        0.5, description="share of the structured windows with filaments (the rest: clusters)"
    )
    filaments_per_window: IntRange = Field((1, 3), description="filaments in a window (min, max)")
    persistence_length_um: Positive = Field(3.0, description="bending stiffness of the filaments")
    clusters_per_window: IntRange = Field((1, 6), description="clusters in a window (min, max)")
    cluster_radius_nm: tuple[Positive, Positive] = Field(
        (30.0, 150.0), description="rms radius of a cluster per axis, drawn from (min, max)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> StructuredSamplesConfig:
        for name in ("filaments_per_window", "clusters_per_window", "cluster_radius_nm"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (min, max) with min <= max")
        return self


class TrainingConfig(Frozen):
    """Simulation-based training (DECODE's published defaults where they apply)."""

    crop_px: Annotated[int, Field(ge=16)] = Field(40, description="side of the simulated crops")
    batch_size: Annotated[int, Field(ge=1)] = 32
    lr: Positive = 6e-4
    weight_decay: NonNegative = 0.1
    lr_step_every: Annotated[int, Field(ge=1)] = Field(1000, description="steps between LR decays")
    lr_gamma: Fraction = 0.9
    grad_clip_norm: Positive = 0.03
    steps: Annotated[int, Field(ge=1)] = Field(20000, description="step budget")
    time_budget_s: Positive | None = Field(None, description="stop after this wall time")
    density_range_per_um2: tuple[NonNegative, NonNegative] = Field(
        (0.0, 2.0), description="training density drawn per sample from (low, high)"
    )
    structured: StructuredSamplesConfig = Field(
        StructuredSamplesConfig(), description="filament/cluster windows among the uniform ones"
    )
    min_target_photons: NonNegative = Field(100.0, description="dimmer emitters are not targets")
    max_targets: Annotated[int, Field(ge=1)] = 256
    eval_every: Annotated[int, Field(ge=1)] = 250
    eval_samples: Annotated[int, Field(ge=8)] = 256
    checkpoint_every: Annotated[int, Field(ge=1)] = 250
    log_every: Annotated[int, Field(ge=1)] = Field(
        25, description="steps between progress lines of <out>/train_log.jsonl (and ≤ 30 s)"
    )
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
    seed: int = 0


# --------------------------------------------------------------------------- pipeline
class SimulatedSourceConfig(Frozen):
    """The simulated microscope of the ``microscope`` section as a live source."""

    kind: Literal["simulated"] = "simulated"
    record_raw: bool = Field(True, description="keep the acquired frames as raw.ome.tif")


class ReplaySourceConfig(Frozen):
    """Replay of recorded TIFF / OME-TIFF files (a multi-file series in order)."""

    kind: Literal["replay"] = "replay"
    paths: list[Path] = Field(description="movie files, in order")
    start_frame: Annotated[int, Field(ge=0)] = 0
    stop_frame: Annotated[int, Field(ge=1)] | None = None
    loop: bool = False
    fps: Positive | None = Field(None, description="replay rate; default: recorded interval")
    realtime: bool = Field(False, description="camera-paced and dropping, instead of lossless")


class MMSourceConfig(Frozen):
    """A Micro-Manager core (pymmcore-plus) with a lab's own hardware configuration.

    Photon conversion: the camera's ``Offset`` (baseline) and ``EMGain`` properties are used where
    the camera has them, the ``camera`` section fills in the rest, and a value set here overrides
    both (for a camera that reports none, or reports a setting rather than a calibration).
    """

    kind: Literal["mm"] = "mm"
    record_raw: bool = Field(True, description="keep the acquired frames as raw.ome.tif")
    system_config: Path = Field(
        description="Micro-Manager .cfg file, relative to this YAML; '#py' lines = Python devices"
    )
    adapter_path: Path | None = Field(
        None, description="folder with the C++ device adapters; default: pymmcore-plus's search"
    )
    camera: str | None = Field(None, description="camera device label (core default if None)")
    exposure_ms: Positive | None = Field(None, description="set at start; None keeps the .cfg's")
    buffer_mb: Annotated[int, Field(ge=1)] = Field(256, description="circular buffer size, MiB")
    frame_timeout_s: Positive = Field(10.0, description="longest wait for a frame, then error")
    laser_device: str | None = Field(None, description="activation laser device label")
    laser_property: str = Field("Power", description="property that sets the activation")
    baseline_adu: NonNegative | None = Field(None, description="override the camera's offset")
    e_per_adu: Positive | None = Field(None, description="override: electrons per ADU")
    em_gain: Annotated[float, Field(ge=1)] | None = Field(None, description="override EM gain")
    qe: Fraction | None = Field(None, description="override quantum efficiency")
    mda: dict[str, Any] | Path | None = Field(
        None,
        description="run this useq MDASequence (a mapping, or a YAML/JSON file relative to this "
        "YAML) instead of a continuous acquisition, e.g. {time_plan: {interval: 0, loops: 2000}}",
    )

    @model_validator(mode="after")
    def _check_mda(self) -> MMSourceConfig:
        if isinstance(self.mda, dict):
            import useq

            try:
                useq.MDASequence.model_validate(self.mda)
            except ValidationError as exc:
                raise ValueError(f"mda is not a valid useq MDASequence: {exc}") from None
        return self


SourceConfig = Annotated[
    SimulatedSourceConfig | ReplaySourceConfig | MMSourceConfig, Field(discriminator="kind")
]


class TransportConfig(Frozen):
    """ZeroMQ endpoints (loopback by default) and queue lengths."""

    host: str = Field("127.0.0.1", description="address to bind; non-loopback needs CURVE keys")
    frames_port: Annotated[int, Field(ge=0, le=65535)] = Field(0, description="0 = pick a free one")
    results_port: Annotated[int, Field(ge=0, le=65535)] = 0
    preview_port: Annotated[int, Field(ge=0, le=65535)] = 0
    control_port: Annotated[int, Field(ge=0, le=65535)] = 0
    frame_queue: Annotated[int, Field(ge=1)] = Field(16, description="frames queued per side")
    keys_dir: Path | None = Field(None, description="CURVE keys (live-decode keys DIR)")


class InferenceConfig(Frozen):
    """The worker: which model, where, how it batches."""

    model: Path | None = Field(None, description="model file; None = the bundled demo model")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    max_batch: Annotated[int, Field(ge=1)] = Field(32, description="frames per network call")
    amp: bool = Field(True, description="bf16 autocast on CUDA")
    ignore_model_mismatch: bool = Field(False, description="run although the card differs")
    speed: Literal["reference", "fast"] = Field(
        "fast",
        description="fast: channels_last, bf16 autocast where the CPU/GPU supports it "
        "(localizations within ~2 nm of fp32; see benchmarks/RESULTS.md); reference: fp32",
    )
    cpu_threads: Annotated[int, Field(ge=1)] | None = Field(
        None, description="torch CPU threads; default: cores − 1 (the source needs one)"
    )
    pinned_copy: bool = Field(
        False, description="CUDA: stage frames in pinned buffers, copy on a side stream"
    )
    idle_timeout_s: Positive | None = Field(
        120.0, description="a worker that receives nothing for this long stops; None = never"
    )
    extra_formats: tuple[Literal["decode_h5", "smap"], ...] = Field(
        (),
        description="localization files written when the worker finishes, besides locs.csv "
        "and locs.hdf5: decode_h5 → locs.decode.h5 (DECODE), smap → locs_sml.mat (SMAP)",
    )


class StopWhenConfig(Frozen):
    """Auto-stop: the acquisition ends cleanly when any condition set here is met."""

    frc_nm: Positive | None = Field(None, description="FRC resolution reached (≤ this), nm")
    localizations: Annotated[float, Field(gt=0)] | None = Field(
        None, description="localizations collected (≥ this)"
    )
    minutes: Positive | None = Field(None, description="wall time of the run (≥ this)")


class QualityConfig(Frozen):
    """Live quality (``live_decode.quality``): NeNA, FRC, drift, model-mismatch alarm."""

    enabled: bool = Field(True, description="compute NeNA/FRC/drift beside the worker")
    every_frames: Annotated[int, Field(ge=10)] = Field(
        500, description="NeNA and FRC are recomputed every this many frames"
    )
    frc_pixel_nm: Positive = Field(5.0, description="fine pixel of the two FRC half-images")
    drift_window_frames: Annotated[int, Field(ge=10)] = Field(
        200, description="frames per RCC drift window"
    )
    drift_corrected_copy: bool = Field(
        False, description="also write locs_drift_corrected.csv at the end (raw files unchanged)"
    )
    nena_frame_gap: Annotated[int, Field(ge=1)] = Field(
        3,
        description="NeNA pairs frames t and t+gap; 3: a temporal-context network's localizations "
        "of t and t+1 share input frames, so their errors correlate and adjacent-frame NeNA "
        "comes out too small (measured 2.1 nm at gap 1 vs 5.1 nm at gap 3 on the demo)",
    )
    mismatch: bool = Field(True, description="model-mismatch residual and alarm in the worker")
    mismatch_max_rate_hz: Positive = Field(
        5.0, description="frames per second the mismatch residual is computed on, at most"
    )


class ControlConfig(Frozen):
    """Closed-loop 405 nm activation control on the network's density (``live_decode.control``).

    Time is counted in camera frames: gains, rates and windows are per frame, so the loop behaves
    the same at any frame rate. Powers are those of the actuator (mW for a laser's power).
    """

    mode: Literal["off", "auto"] = Field("off", description="off = manual laser power")
    target_density_per_um2: NonNegative = Field(1.0, description="density to hold")
    kp: NonNegative = Field(2.0, description="proportional gain, mW per (emitter/µm²)")
    ki: NonNegative = Field(0.5, description="integral gain, mW per (emitter/µm²·frame)")
    smoothing: Literal["median", "ema"] = Field(
        "median", description="running median (robust to outlier frames) or exponential average"
    )
    smoothing_frames: Annotated[int, Field(ge=1)] = Field(10, description="EMA/median window")
    max_rate_mw_per_frame: Positive = Field(1.0, description="largest change per frame")
    min_power_mw: NonNegative = Field(0.0, description="lowest power the loop commands in auto")
    safe_power_mw: NonNegative = Field(0.0, description="power on a watchdog or error event")
    watchdog_s: Positive = Field(1.0, description="no stats for this long -> safe power")
    max_stats_age_s: Positive = Field(
        0.5,
        description="stats of a frame taken longer ago than this are stale: not acted on, the "
        "integrator holds (counted in control.csv and the source summary)",
    )
    autotune_step_mw: Positive = Field(4.0, description="power step of the tuning step test")
    autotune_baseline_frames: Annotated[int, Field(ge=5)] = Field(
        60, description="frames held at the starting power before the step"
    )
    autotune_response_frames: Annotated[int, Field(ge=20)] = Field(
        150, description="frames recorded after the step"
    )
    autotune_tau_c_dead_times: Positive = Field(
        1.5,
        description="closed-loop time constant set by autotune, in measured dead times "
        "(SIMC: 1 = tight; larger = gentler, more margin for a latency that grows)",
    )
    stop_when: StopWhenConfig = StopWhenConfig()


class Config(Frozen):
    """The whole tree. Later stages add their own sub-trees here."""

    camera: CameraConfig = CameraConfig()
    psf: PsfConfig = GaussianPsfConfig()
    emitters: EmittersConfig = EmittersConfig()
    photophysics: PhotophysicsConfig = PhotophysicsConfig()
    background: BackgroundConfig = BackgroundConfig()
    microscope: MicroscopeConfig = MicroscopeConfig()
    model: ModelConfig = ModelConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    training: TrainingConfig = TrainingConfig()
    source: SourceConfig = SimulatedSourceConfig()
    transport: TransportConfig = TransportConfig()
    inference: InferenceConfig = InferenceConfig()
    control: ControlConfig = ControlConfig()
    quality: QualityConfig = QualityConfig()

    @property
    def fov_area_um2(self) -> float:
        return area_um2(self.microscope.fov_px, self.camera.pixel_size_nm)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p in _UNION_TAGS))


_UNION_TAGS = {"gaussian", "astigmatic", "spline", "simulated", "replay", "mm"}


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Validate a plain dict as a :class:`Config`; errors name ``source`` and each key path."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: invalid configuration ({exc.error_count()} problem(s)):"]
        for err in exc.errors():
            key = _format_loc(err["loc"]) or "<top level>"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (typo?); remove it or check the spelling"
            lines.append(f"  {key}: {msg}")
        raise ConfigError("\n".join(lines)) from None


def load_config(path: str | Path) -> Config:
    """Load and validate a YAML config file.

    Raises
    ------
    ConfigError
        If the file is missing, is not valid YAML, or any key/value is invalid; the message names
        the file and the key path of every problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (see configs/ for examples)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, not {type(data)}")
    cfg = config_from_dict(data, source=str(path))
    return _resolve_paths(cfg, path.parent)


def _resolve_paths(cfg: Config, base: Path) -> Config:
    """Paths in a config file (calibration, movies, model, keys) are relative to that file."""

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    psf, source, inference = cfg.psf, cfg.source, cfg.inference
    if isinstance(psf, SplinePsfConfig):
        psf = psf.model_copy(update={"calibration": fix(psf.calibration)})
    if isinstance(source, ReplaySourceConfig):
        source = source.model_copy(update={"paths": [fix(p) for p in source.paths]})
    if isinstance(source, MMSourceConfig) and source.system_config is not None:
        source = source.model_copy(update={"system_config": fix(source.system_config)})
    if isinstance(source, MMSourceConfig) and isinstance(source.mda, Path):
        source = source.model_copy(update={"mda": fix(source.mda)})
    if inference.model is not None:
        inference = inference.model_copy(update={"model": fix(inference.model)})
    return cfg.model_copy(update={"psf": psf, "source": source, "inference": inference})


DEMO_CONFIG = Path(__file__).resolve().parent / "bundled" / "demo.yaml"
"""The embedded demo config (simulated microscope that fits the bundled model)."""


def area_um2(shape_px: tuple[int, int], pixel_size_nm: float) -> float:
    """Area of a (H, W) pixel field in µm²."""
    return math.prod(shape_px) * (pixel_size_nm / 1000.0) ** 2
