"""``ld.run``: the live pipeline (source, worker, viewer processes) as a handle to hold.

:class:`RunHandle` wraps :class:`live_decode.pipeline.supervisor.Supervisor`: it starts the
processes, supervises them on a background thread (restarting a dead worker), and on
:meth:`RunHandle.wait` writes ``summary.json`` and the plots, exactly as ``live-decode run`` does
(the command is this handle plus a dashboard).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from live_decode.api.configs import ConfigLike, load_config

if TYPE_CHECKING:
    from live_decode.endpoints import RunEndpoints
    from live_decode.pipeline.supervisor import RunOptions, RunResult, RunState, Supervisor

CONFIG_COPY_NAME = "config.api.yaml"
"""Where a config given as an object or mapping is written for the run's processes."""


def run(
    config: ConfigLike | None = None,
    *,
    out: str | Path | None = None,
    frames: int | None = None,
    seconds: float | None = None,
    headless: bool = True,
    model: str | Path | None = None,
    replay: Sequence[str | Path] | None = None,
    realtime: bool = False,
    ignore_model_mismatch: bool = False,
    record_raw: bool = True,
    overwrite: bool = False,
    on_update: Callable[[RunState], None] | None = None,
    start: bool = True,
) -> RunHandle:
    """Start the live pipeline for ``config``; returns a handle (already started by default).

    Parameters
    ----------
    config
        A YAML path, mapping or :class:`Config`; None: the demo (simulated microscope).
    out
        The run directory; None: ``runs/<date-time>``.
    frames, seconds
        Stop the source after this many frames / seconds (None: until its stream ends or
        :meth:`RunHandle.stop`).
    headless
        No viewer window (the default here; ``live-decode run`` opens one when it can).
    model
        A model file overriding the config's ``inference.model``.
    replay
        Movie files to replay instead of the config's source.
    realtime
        Pace a replay at the recorded camera speed (it then drops frames like a camera).
    ignore_model_mismatch
        Run although the model card does not fit the camera.
    record_raw
        A live source keeps its frames as ``raw.ome.tif``.
    overwrite
        Delete an earlier run's results in ``out`` first (else such a directory is refused).
    on_update
        Called with the :class:`RunState` a few times a second (from the supervising thread).
    start
        Start now; else call :meth:`RunHandle.start`.
    """
    from live_decode.pipeline.supervisor import RunOptions

    run_dir = (
        Path(out) if out is not None else Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    opts = RunOptions(
        config=_config_path(config, run_dir),
        frames=frames,
        seconds=seconds,
        out=run_dir,
        headless=headless,
        model=Path(model) if model is not None else None,
        replay=tuple(Path(p) for p in replay) if replay else None,
        realtime=realtime,
        ignore_model_mismatch=ignore_model_mismatch,
        record_raw=record_raw,
        overwrite=overwrite,
    )
    handle = RunHandle(opts, on_update)
    if start:
        handle.start()
    return handle


def _config_path(config: ConfigLike | None, run_dir: Path) -> Path | None:
    """A path the run's processes can load: the file given, or the config written as YAML."""
    if config is None or isinstance(config, str | Path):
        if config is not None:
            load_config(config)  # a bad file fails here, before any process starts
        return Path(config) if config is not None else None
    import yaml

    cfg = load_config(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CONFIG_COPY_NAME
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), "utf-8")
    return path.resolve()


class RunHandle:
    """A live run: :meth:`start`, :meth:`stop`, :meth:`wait`; :attr:`endpoints`, :attr:`state`.

    Usable as a context manager (``with ld.run(cfg) as run: ...`` stops and waits on exit).
    """

    def __init__(
        self, opts: RunOptions, on_update: Callable[[RunState], None] | None = None
    ) -> None:
        self.options = opts
        self._on_update = on_update
        self._supervisor: Supervisor | None = None
        self._thread: threading.Thread | None = None
        self._exit_code: int | None = None
        self._error: BaseException | None = None
        self._result: RunResult | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> RunHandle:
        """Start the processes and supervise them on a background thread."""
        from live_decode.pipeline.supervisor import Supervisor

        if self._supervisor is not None:
            raise RuntimeError("this run was started already; call ld.run again for a new run")
        self._supervisor = Supervisor(self.options)
        self.options = replace(self.options, out=self._supervisor.out)
        self._supervisor.start()
        self._thread = threading.Thread(target=self._supervise, name="ld-run", daemon=True)
        self._thread.start()
        return self

    def _supervise(self) -> None:
        assert self._supervisor is not None
        try:
            self._exit_code = self._supervisor.supervise(self._on_update)
        except BaseException as exc:
            self._error = exc

    def stop(self) -> None:
        """Stop the run as Ctrl-C does: the source stops (laser to safe, end of stream), the
        worker localizes the frames in flight; :meth:`wait` then gives the result (``status``
        ``interrupted``)."""
        if self._supervisor is not None and self._supervisor.signal is None:
            self._supervisor.signal = signal.SIGINT

    def wait(self, timeout_s: float | None = None) -> RunResult | None:
        """Wait for the run to end; write ``summary.json`` and the plots; return the result.

        Returns None if ``timeout_s`` passes first (the run goes on). Ctrl-C while waiting
        stops the run cleanly, as in ``live-decode run``; the result's ``exit_code``,
        ``status`` and ``reason`` say how it ended.
        """
        from live_decode.pipeline.supervisor import finish_run

        if self._result is not None:
            return self._result
        if self._thread is None or self._supervisor is None:
            raise RuntimeError("the run was not started; call start() first")
        try:
            self._thread.join(timeout_s)
        except KeyboardInterrupt:
            self.stop()
            self._thread.join()
        if self._thread.is_alive():
            return None
        if self._error is not None:
            raise self._error
        assert self._exit_code is not None
        self._result = finish_run(self._supervisor, self._exit_code)
        return self._result

    def __enter__(self) -> RunHandle:
        if self._supervisor is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._result is None and self._thread is not None:
            if self._thread.is_alive():
                self.stop()
            self.wait()

    # ------------------------------------------------------------------ what it shows
    @property
    def running(self) -> bool:
        """Whether the supervisor is still watching the processes."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def out(self) -> Path:
        """The run directory."""
        assert self.options.out is not None
        return self.options.out

    @property
    def endpoints(self) -> RunEndpoints:
        """The run's ZeroMQ endpoints (frames, results, preview, control), for a viewer or a
        subscriber of your own (``live_decode.transport.results.ResultSubscriber``)."""
        if self._supervisor is None:
            raise RuntimeError("the endpoints are chosen when the run starts; call start()")
        return self._supervisor.ep

    @property
    def state(self) -> RunState:
        """What the supervisor has seen so far: running totals, recent frames, errors."""
        if self._supervisor is None:
            raise RuntimeError("the run was not started; call start() first")
        return self._supervisor.state

    @property
    def summary(self) -> dict[str, object] | None:
        """``summary.json``'s content once the run has ended and :meth:`wait` returned."""
        return self._result.summary if self._result is not None else None
