"""``ld.localize_many``: batch re-analysis of recorded movies on a Dask cluster."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import Client


def localize_many(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    client: Client | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    chunk_frames: int | None = None,
    retries: int = 2,
    config: str | Path | None = None,
    model: str | Path | None = None,
    device: str | None = None,
    ignore_model_mismatch: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, object]:
    """Localize TIFF movies (one series, in order) on Dask into the run directory ``out``.

    The rows equal ``live-decode localize`` of the same files in one process: each movie is cut
    into chunks of ``chunk_frames`` frames with a one-frame halo on each side (temporal context
    t−1, t, t+1 is exact at chunk edges), every worker loads the model once, and the chunks are
    written in frame order with the same writers (``locs.csv``, ``locs.hdf5``, summaries).

    Parameters
    ----------
    paths
        TIFF / OME-TIFF files; every worker must see them at these paths.
    out
        The run directory (an earlier run's results are refused unless ``overwrite``).
    client
        A ``distributed.Client`` of the cluster to use (SLURM/PBS via dask-jobqueue, Kubernetes,
        dask-cuda; left open). Else ``scheduler`` (``tcp://host:port`` of a running scheduler),
        else a local cluster of ``workers`` processes (default: the CPU count), one thread each.
    chunk_frames
        Frames per task; None: 256.
    retries
        How often a chunk whose task raised is resubmitted (a chunk whose worker died is
        rescheduled by Dask itself).
    config, model, device
        As for ``live-decode localize``; ``device`` is where the workers run the model
        (``cuda`` on a multi-GPU host: one GPU per local worker).
    progress
        Called with (chunks done, chunks in total) as chunks complete.

    Returns
    -------
    dict
        The run's ``summary.json``; read the rows with :func:`live_decode.read_locs`.

    Raises
    ------
    live_decode.errors.LiveDecodeError
        Without dask.distributed (``pip install 'live-decode[dask]'``), or when a worker cannot
        load the model (:class:`~live_decode.errors.ModelCardError`) or read a movie
        (:class:`~live_decode.errors.MovieError`): the message names the worker and the fix.
    """
    from live_decode.pipeline.distributed import DEFAULT_CHUNK_FRAMES
    from live_decode.pipeline.distributed import localize_many as run

    return run(
        [Path(p) for p in paths],
        Path(out),
        client=client,
        workers=workers,
        scheduler=scheduler,
        chunk_frames=chunk_frames or DEFAULT_CHUNK_FRAMES,
        retries=retries,
        config=None if config is None else Path(config),
        model=None if model is None else Path(model),
        device=device,
        ignore_model_mismatch=ignore_model_mismatch,
        overwrite=overwrite,
        chunk_progress=progress,
    )
