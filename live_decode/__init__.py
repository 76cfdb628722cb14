"""live_decode: DECODE-style deep-learning SMLM localization, live during acquisition.

The public API, imported as ``import live_decode as ld``::

    cfg = ld.demo_config()                      # or ld.load_config("configs/my_setup.yaml")
    movie, truth = ld.simulate(cfg, frames=100, seed=1)
    model = ld.load_model()                     # the bundled model, with its model card
    locs = model.localize(movie, camera=cfg)    # pandas DataFrame, one row per localization
    ld.evaluate(locs, truth)                    # the metrics `live-decode evaluate --json` prints
    ld.save(locs, "runs/offline")               # ThunderSTORM CSV + Picasso HDF5
    ld.fit("raw.tif", "fits/mine", minutes=60)  # calibrate → train → localize your own movie
    handle = ld.run(cfg, out="runs/live")       # the live pipeline, as `live-decode run`
    with ld.attach(core, cfg):                  # inside your own pymmcore-plus MDA
        core.run_mda(sequence).join()

Importing this package is light: torch, ZeroMQ and Qt load only when a verb that needs them is
first used (PEP 562 module ``__getattr__``). Everything not listed in ``__all__`` stays importable
from its room (``live_decode.inference``, ``live_decode.io`` ...) but is not part of the API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> module (in live_decode) that defines it.
_EXPORTS: dict[str, str] = {
    "load_config": "live_decode.api.configs",
    "demo_config": "live_decode.api.configs",
    "load_model": "live_decode.api.models",
    "Model": "live_decode.api.models",
    "localize_many": "live_decode.api.batch",
    "fit": "live_decode.api.fit",
    "simulate": "live_decode.api.data",
    "Simulation": "live_decode.api.data",
    "evaluate": "live_decode.api.data",
    "save": "live_decode.api.data",
    "read_locs": "live_decode.api.data",
    "run": "live_decode.api.runs",
    "RunHandle": "live_decode.api.runs",
    "attach": "live_decode.api.attach",
    "Attachment": "live_decode.pipeline.attach",
    "LOC_COLUMNS": "live_decode.api.tables",
    "Config": "live_decode.config",
    "CameraMeta": "live_decode.messages",
    "LiveDecodeError": "live_decode.errors",
    "ConfigError": "live_decode.errors",
    "ModelCardError": "live_decode.errors",
    "MovieError": "live_decode.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from live_decode.api.attach import attach as attach
    from live_decode.api.batch import localize_many as localize_many
    from live_decode.api.configs import demo_config as demo_config
    from live_decode.api.configs import load_config as load_config
    from live_decode.api.data import Simulation as Simulation
    from live_decode.api.data import evaluate as evaluate
    from live_decode.api.data import read_locs as read_locs
    from live_decode.api.data import save as save
    from live_decode.api.data import simulate as simulate
    from live_decode.api.fit import fit as fit
    from live_decode.api.models import Model as Model
    from live_decode.api.models import load_model as load_model
    from live_decode.api.runs import RunHandle as RunHandle
    from live_decode.api.runs import run as run
    from live_decode.api.tables import LOC_COLUMNS as LOC_COLUMNS
    from live_decode.config import Config as Config
    from live_decode.errors import ConfigError as ConfigError
    from live_decode.errors import LiveDecodeError as LiveDecodeError
    from live_decode.errors import ModelCardError as ModelCardError
    from live_decode.errors import MovieError as MovieError
    from live_decode.messages import CameraMeta as CameraMeta
    from live_decode.pipeline.attach import Attachment as Attachment


def __getattr__(name: str) -> Any:
    """Import the module that defines a public name on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'live_decode' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
