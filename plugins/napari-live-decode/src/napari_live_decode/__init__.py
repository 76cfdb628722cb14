"""napari plugin for live_decode: live super-resolution from a running pipeline, SMLM readers.

Contributions (``napari.yaml``): the live dock widget (:class:`LiveDecodeWidget`), a widget that
starts a run from a config (:class:`StartRunWidget`), and readers for Picasso HDF5, ThunderSTORM
CSV and DECODE h5 localization files (Points layers in nm). Built on ``live_decode``'s public API
(``ld.run``, ``ld.read_locs``) and its Qt-free receiver (``live_decode.viewer.Receiver``).
Importing this package loads neither napari nor Qt; the widgets do.
"""

from __future__ import annotations

__version__ = "0.1.0"
