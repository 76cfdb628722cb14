"""Batch re-analysis on a Dask cluster: frame chunks localized in parallel, written as one run.

:func:`localize_many` is :func:`~live_decode.pipeline.offline.localize_files` with the frames
localized on Dask workers (``dask.distributed``): a local cluster of N processes, or any cluster
the lab runs (dask-jobqueue on SLURM/PBS, Kubernetes, dask-cuda) through its ``Client``. The
series is cut into chunks of ``chunk_frames`` frames; each task reads its chunk plus a one-frame
halo on each side (memory-mapped, :class:`~live_decode.io.movie.TiffMovie`), so frame t sees
t−1 and t+1 exactly as in one process, and the series' own ends and recorded gaps replicate the
edge frame as the ring buffer does (the halo goes through the same
:class:`~live_decode.pipeline.offline.OfflineStream`; its frames' own rows are dropped). Chunks
come back in any order and are written in frame order with the same writers, so the run
directory holds the rows of a one-process run. Every worker process loads the model once (a
cache keyed by model file, device and config); a failed chunk is retried (``retries``), a chunk
whose worker died is rescheduled by Dask, and a worker that cannot load the model or read a file
fails the run with what to fix.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from live_decode.errors import LiveDecodeError

try:
    from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
except ImportError as exc:  # the optional [dask] extra
    raise LiveDecodeError(
        "batch analysis on Dask needs dask.distributed: pip install 'live-decode[dask]' "
        "(or pip install 'dask[distributed]')"
    ) from exc

from live_decode.config import Config
from live_decode.errors import ModelCardError, MovieError
from live_decode.inference.processor import BatchResult
from live_decode.io.movie import TiffMovie
from live_decode.messages import CameraMeta, FrameStats, Localizations, empty_locs
from live_decode.model.seam import NetworkLocalizer
from live_decode.pipeline.build import build_localizer, load_config_or_demo, model_path
from live_decode.pipeline.offline import OfflineStream, Progress, localize_files
from live_decode.sources.base import SourceFrame
from live_decode.sources.replay import ReplaySource

log = logging.getLogger("live_decode.pipeline.distributed")

DEFAULT_CHUNK_FRAMES = 256  # frames per task: ~0.1–1 s of network time, 2 halo frames of 256
CHUNK_KEY = "ld-chunk"  # task keys are f"{CHUNK_KEY}-{run token}-{chunk number}"
# chunk_progress(chunks_done, chunks_total): called as chunks complete, in any order
ChunkProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class Job:
    """What every chunk of one run shares (pickled into each task)."""

    paths: tuple[str, ...]
    file_offsets: tuple[int, ...]  # series position of each file's first frame, then the total
    camera: CameraMeta
    config: Config
    check_config: bool  # the user's config (PSF, z range, context) is checked against the card
    config_name: str | None
    model: str  # absolute path to the model file
    device: str | None
    ignore_model_mismatch: bool
    batch_frames: int


@dataclass(frozen=True)
class ChunkResult:
    """One chunk's localizations and per-frame stats (its own frames only, not the halo)."""

    number: int
    locs: Localizations
    stats: list[FrameStats]
    frames: int
    worker_pid: int


# Per worker process: the loaded models and the last opened (memory-mapped) movies.
_MODELS: dict[tuple[str, str, str], NetworkLocalizer] = {}
_MOVIES: OrderedDict[str, TiffMovie] = OrderedDict()
OPEN_MOVIES = 16  # a worker keeps this many files open (an archive has thousands)


def _worker_device(device: str | None) -> str | None:
    """One GPU per worker on a multi-GPU host: plain ``cuda`` becomes ``cuda:<worker % GPUs>``
    on a worker named by a number (a LocalCluster); pinned workers (CUDA_VISIBLE_DEVICES,
    dask-cuda) see one GPU and keep ``cuda``."""
    if device not in ("cuda", "auto", None):
        return device
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        return device
    try:
        name = get_worker().name
    except ValueError:  # not in a Dask worker
        return device
    return f"cuda:{int(name) % count}" if isinstance(name, int) else device


def _localizer(job: Job) -> NetworkLocalizer:
    """The job's model, loaded once per worker process."""
    device = _worker_device(job.device)
    key = (job.model, str(device), job.config.model_dump_json())
    if key not in _MODELS:
        try:
            _MODELS[key] = build_localizer(job.config, Path(job.model), device)
        except Exception as exc:
            raise ModelCardError(
                f"Dask worker {_where()} cannot load the model {job.model} on device "
                f"{device or job.config.inference.device}: {exc}. Every worker must see the model "
                "file at this path (a shared file system) and have the device."
            ) from None
    return _MODELS[key]


def _movie(path: str) -> TiffMovie:
    if path in _MOVIES:
        _MOVIES.move_to_end(path)
        return _MOVIES[path]
    try:
        movie = TiffMovie(Path(path))
    except (MovieError, OSError) as exc:
        raise MovieError(
            f"Dask worker {_where()} cannot read {path}: {exc}. Every worker must see the "
            "movies at this path (a shared file system)."
        ) from None
    _MOVIES[path] = movie
    while len(_MOVIES) > OPEN_MOVIES:
        _MOVIES.popitem(last=False)[1].close()
    return movie


def _where() -> str:
    try:
        return f"{get_worker().address} (pid {os.getpid()})"
    except ValueError:  # not in a Dask worker
        return f"pid {os.getpid()}"


def _read(job: Job, position: int) -> npt.NDArray[Any]:
    f = int(np.searchsorted(job.file_offsets, position, side="right") - 1)
    try:
        return _movie(job.paths[f]).frame(position - job.file_offsets[f])
    except MovieError:
        raise
    except Exception as exc:
        raise MovieError(
            f"Dask worker {_where()} cannot read frame {position - job.file_offsets[f]} of "
            f"{job.paths[f]}: {exc}"
        ) from None


def localize_chunk(
    job: Job, number: int, start: int, stop: int, indices: npt.NDArray[np.int64]
) -> ChunkResult:
    """Localize series positions [start, stop) (a Dask task).

    ``indices`` are the camera frame indices of positions [start − 1, stop + 1) clipped to the
    series: the halo frames give the chunk's edge frames their true neighbours, and a jump in
    the indices is a gap, never bridged (as in one process).
    """
    localizer = _localizer(job)
    lo, hi = max(start - 1, 0), min(stop + 1, job.file_offsets[-1])
    if len(indices) != hi - lo:
        raise ValueError(f"chunk {number}: {len(indices)} indices for positions [{lo}, {hi})")
    stream = OfflineStream(
        localizer,
        job.camera,
        config=job.config if job.check_config else None,
        config_name=job.config_name,
        ignore_model_mismatch=job.ignore_model_mismatch,
        batch_frames=job.batch_frames,
    )
    frames = (
        SourceFrame(int(indices[p - lo]), time.time_ns(), _read(job, p)) for p in range(lo, hi)
    )
    results = list(stream.batches(frames))
    own = indices[start - lo : stop - lo]
    locs = np.concatenate([empty_locs(), *(r.locs for r in results)])
    keep = np.isin(locs["frame"], own)
    wanted = set(own.tolist())
    stats = [s for r in results for s in r.stats if s.frame in wanted]
    return ChunkResult(number, locs[keep], stats, stop - start, os.getpid())


def chunk_bounds(n_frames: int, chunk_frames: int) -> list[tuple[int, int]]:
    """[start, stop) of each chunk of a series of ``n_frames`` frames."""
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    return [(a, min(a + chunk_frames, n_frames)) for a in range(0, n_frames, chunk_frames)]


class TorchThreads(WorkerPlugin):
    """A Dask worker plugin: ``torch.set_num_threads(n)`` in every worker (one core each)."""

    def __init__(self, n: int = 1) -> None:
        self.n = n

    def setup(self, worker: Any) -> None:
        import torch

        torch.set_num_threads(self.n)


def local_client(workers: int) -> Client:
    """A LocalCluster of ``workers`` processes on loopback, one thread and one torch thread each."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    client = Client(cluster)  # type: ignore[no-untyped-call]
    client.register_plugin(TorchThreads(1), name="live-decode-torch-threads")
    return client


def _dask_batches(
    client: Client,
    job_of: Callable[[ReplaySource], Job],
    chunk_frames: int,
    retries: int,
    chunk_progress: ChunkProgress | None,
) -> Callable[[ReplaySource, OfflineStream], Iterator[BatchResult]]:
    """The ``batches`` of :func:`localize_files`: chunks on ``client``, merged in frame order."""

    def run(source: ReplaySource, stream: OfflineStream) -> Iterator[BatchResult]:
        first = source.read()
        if first is None:
            return
        stream.open(first)  # the card is checked here before any task is sent
        job = job_of(source)
        indices = source.frame_indices
        bounds = chunk_bounds(source.n_frames, chunk_frames)
        token = f"{os.getpid()}-{time.time_ns()}"
        log.info(
            "%d frames in %d chunks of %d on %s", source.n_frames, len(bounds), chunk_frames, client
        )
        futures = {
            client.submit(
                localize_chunk,
                job,
                k,
                a,
                b,
                indices[max(a - 1, 0) : b + 1],
                key=f"{CHUNK_KEY}-{token}-{k}",
                retries=retries,
                pure=False,
            ): k
            for k, (a, b) in enumerate(bounds)
        }
        done: dict[int, ChunkResult] = {}
        merged = 0
        try:
            for n_done, future in enumerate(as_completed(futures), start=1):  # type: ignore[no-untyped-call]
                result: ChunkResult = future.result()
                done[result.number] = result
                if chunk_progress is not None:
                    chunk_progress(n_done, len(bounds))
                while merged in done:
                    r = done.pop(merged)
                    merged += 1
                    batch = BatchResult(r.locs, r.stats, finished=merged == len(bounds))
                    yield stream.merge(batch, r.frames)
        finally:
            client.cancel(list(futures))  # type: ignore[no-untyped-call]

    return run


def localize_many(
    movies: Sequence[Path],
    out: Path,
    *,
    client: Client | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    retries: int = 2,
    config: Path | None = None,
    model: Path | None = None,
    device: str | None = None,
    ignore_model_mismatch: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    chunk_progress: ChunkProgress | None = None,
) -> dict[str, object]:
    """Localize ``movies`` (one series, in order) on Dask into the run directory ``out``.

    Parameters
    ----------
    client
        A ``distributed.Client`` of the cluster to use (kept open). Else ``scheduler`` (the
        address of a running scheduler), else a LocalCluster of ``workers`` processes (default:
        the CPU count) that is closed at the end.
    chunk_frames
        Frames per task (plus one halo frame on each side).
    retries
        How often a chunk whose task raised is resubmitted.
    device
        Where the workers run the model (``cuda`` on a multi-GPU host: one GPU per worker).
    progress, chunk_progress
        Called with (frames merged, frames in total) in frame order, and with (chunks done,
        chunks in total) as chunks complete.

    Returns the summary, and writes the run directory exactly as
    :func:`~live_decode.pipeline.offline.localize_files` does (the same rows).
    """
    cfg = load_config_or_demo(config)
    model_file = str(model_path(cfg, model).resolve())
    own = client is None
    if client is None:
        if scheduler is not None:
            client = Client(scheduler)  # type: ignore[no-untyped-call]
        else:
            client = local_client(workers or os.cpu_count() or 1)
    label = str(config) if config is not None else None

    def job_of(source: ReplaySource) -> Job:
        return Job(
            paths=tuple(str(Path(m).resolve()) for m in movies),
            file_offsets=tuple(int(o) for o in source.file_offsets),
            camera=source.camera,
            config=cfg,
            check_config=config is not None,
            config_name=label,
            model=model_file,
            device=device,
            ignore_model_mismatch=ignore_model_mismatch,
            batch_frames=cfg.inference.max_batch,
        )

    try:
        return localize_files(
            movies,
            out,
            config=config,
            model=Path(model_file),
            device="cpu",  # the client's copy only checks the card and names the files
            ignore_model_mismatch=ignore_model_mismatch,
            progress=progress,
            overwrite=overwrite,
            batches=_dask_batches(client, job_of, chunk_frames, retries, chunk_progress),
        )
    finally:
        if own:
            cluster = client.cluster
            client.close()  # type: ignore[no-untyped-call]
            if cluster is not None:
                cluster.close()


__all__ = [
    "DEFAULT_CHUNK_FRAMES",
    "chunk_bounds",
    "local_client",
    "localize_chunk",
    "localize_many",
]
