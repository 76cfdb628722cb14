"""The localizer: camera frames in ADU → photons → network (two stages) → localizations.

Both the streaming worker and offline inference use this one object, so they give the same
results. Photon conversion runs on the device; on CUDA the network runs under bf16 autocast.
Further speed-ups are opt-in through :class:`SpeedOptions`; with the defaults the localizer
computes exactly what the reference fp32 path computes on CPU (``benchmarks/`` measures each
option on and off, ``tests/unit/inference/test_optimized_path.py`` bounds what it changes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from live_decode.config import PostprocessConfig
from live_decode.messages import CameraMeta, Localizations
from live_decode.model.checkpoint import ModelCard
from live_decode.model.network import DecodeNet, pad_to_multiple
from live_decode.model.postprocess import localize

CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune"]


@dataclass(frozen=True)
class SpeedOptions:
    """How the network runs; every option defaults to the reference behaviour.

    Attributes
    ----------
    channels_last : bool
        Weights and activations in NHWC layout (faster convolutions in oneDNN and cuDNN).
    amp_dtype : "bfloat16" or "float16"
        Autocast dtype when autocast is on (``amp`` of :class:`Localizer`).
    autocast_cpu : bool
        Autocast on CPU too. Pays on CPUs with bf16 instructions (AVX512-BF16, AMX); changes the
        localizations by a bounded amount (see the accuracy test).
    pinned_copy : bool
        CUDA only: frames are staged in two alternating pinned host buffers and copied to the GPU
        with ``non_blocking`` on a side stream, so the copy can overlap queued compute.
    compile_mode : "off", "default", "reduce-overhead" or "max-autotune"
        ``torch.compile`` both stages ("reduce-overhead" adds CUDA graphs). Batches are padded to
        a power of two so at most log2(max_batch) + 1 shapes are compiled. Compiling takes
        minutes on a CPU and did not pay there; meant for CUDA.
    """

    channels_last: bool = False
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    autocast_cpu: bool = False
    pinned_copy: bool = False
    compile_mode: CompileMode = "off"

    @classmethod
    def fast(cls, device: torch.device) -> SpeedOptions:
        """The options measured to pay on ``device`` (benchmarks/RESULTS.md), compile excepted."""
        if device.type == "cuda":
            return cls(channels_last=True, pinned_copy=True)
        return cls(channels_last=True, autocast_cpu=True)


class _PinnedUploader:
    """Host → GPU copies through two alternating pinned buffers on a side CUDA stream.

    A buffer is rewritten only after the copy that last read it has finished (its event), so the
    caller may reuse its own array as soon as :meth:`upload` returns.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
        self._buffers: list[Tensor | None] = [None, None]
        self._events: list[torch.cuda.Event | None] = [None, None]
        self._next = 0

    def upload(self, host: Tensor) -> Tensor:
        k, self._next = self._next, self._next ^ 1
        event = self._events[k]
        if event is not None:
            event.synchronize()
        buf = self._buffers[k]
        if buf is None or buf.shape != host.shape or buf.dtype != host.dtype:
            buf = torch.empty(host.shape, dtype=host.dtype, pin_memory=True)
            self._buffers[k] = buf
        buf.copy_(host)
        with torch.cuda.stream(self.stream):
            dev = buf.to(self.device, non_blocking=True)
            done = torch.cuda.Event()  # type: ignore[no-untyped-call]
            done.record(self.stream)
        self._events[k] = done
        compute = torch.cuda.current_stream(self.device)
        compute.wait_stream(self.stream)
        dev.record_stream(compute)  # allocated on the side stream, used on the compute stream
        return dev


class Localizer:
    """A loaded DECODE model ready to localize frames on ``device``.

    Implements :class:`live_decode.model.seam.NetworkLocalizer`: localizations, no image tiles.
    """

    predicts_photons = True
    image_upsampling: int | None = None

    def __init__(
        self,
        net: DecodeNet,
        card: ModelCard,
        device: torch.device,
        postprocess: PostprocessConfig | None = None,
        amp: bool = True,
        speed: SpeedOptions | None = None,
    ) -> None:
        self.speed = speed or SpeedOptions()
        self.net = net.to(device).eval()
        self.card = card
        self.device = device
        self.config = card.parsed_config
        self.scaling = card.parsed_scaling
        self.postprocess = postprocess or self.config.postprocess
        self.pixel_size_nm = self.config.camera.pixel_size_nm
        self.amp = amp and (device.type == "cuda" or self.speed.autocast_cpu)
        self._amp_dtype = getattr(torch, self.speed.amp_dtype)
        self._memory_format = (
            torch.channels_last if self.speed.channels_last else torch.contiguous_format
        )
        if self.speed.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._uploader = (
            _PinnedUploader(device) if self.speed.pinned_copy and device.type == "cuda" else None
        )
        self._frame_fn: Callable[[Tensor], Tensor] = self.net.frame_features
        self._context_fn: Callable[[Tensor, Tensor, Tensor], Tensor] = self.net.context
        mode = self.speed.compile_mode
        if mode != "off":
            self._frame_fn = torch.compile(self.net.frame_features, mode=mode, dynamic=False)
            self._context_fn = torch.compile(self.net.context, mode=mode, dynamic=False)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self._amp_dtype, enabled=self.amp)

    def to_input(self, adu: np.ndarray | Tensor, cam: CameraMeta) -> Tensor:
        """Scaled network input (N, 1, H', W') on the device from ADU frames (N, H, W).

        H', W' are padded up to multiples of 4 (bottom/right, edge replicated).
        """
        host = torch.as_tensor(adu)
        if self._uploader is not None and host.device.type == "cpu":
            x = self._uploader.upload(host).float()
        else:
            x = host.to(self.device, non_blocking=True).float()
        photons = cam.adu_to_photons(x)
        x = pad_to_multiple(self.scaling.scale_input(photons)[:, None])
        return x.contiguous(memory_format=self._memory_format)

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """Frame U-Net features (N, F, H', W') of scaled inputs (N, 1, H', W')."""
        with self._autocast():
            return self._run(self._frame_fn, x)

    @torch.no_grad()
    def outputs(
        self, f_prev: Tensor, f_cur: Tensor, f_next: Tensor, shape_px: tuple[int, int]
    ) -> Tensor:
        """Output maps (N, 10, H, W), cropped back to the frame size, float32."""
        with self._autocast():
            out = self._run(self._context_fn, f_prev, f_cur, f_next)
        h, w = shape_px
        return out[..., :h, :w].float()

    def _run(self, fn: Callable[..., Tensor], *xs: Tensor) -> Tensor:
        """``fn(*xs)``; when compiled, on a batch padded to a power of two and copied out."""
        mode = self.speed.compile_mode
        if mode == "off":
            return fn(*xs)
        n = xs[0].shape[0]
        padded = 1 << max(0, n - 1).bit_length()
        if padded != n:
            xs = tuple(torch.cat([x, x[-1:].expand(padded - n, *x.shape[1:])]) for x in xs)
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
        # CUDA-graph outputs are overwritten by the next replay; the ring keeps features.
        return fn(*xs)[:n].clone()

    def localize(self, out: Tensor, frame_indices: np.ndarray) -> Localizations:
        return localize(out, frame_indices, self.postprocess, self.scaling, self.pixel_size_nm)

    def image(self, out: Tensor) -> Tensor | None:
        """DECODE yields localizations only (the viewer renders them)."""
        return None
