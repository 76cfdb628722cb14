"""The implementation of the public API that ``import live_decode as ld`` exposes lazily.

One module per kind of verb: :mod:`.configs` (load_config, demo_config), :mod:`.models`
(load_model, Model.localize), :mod:`.batch`
(localize_many, on Dask), :mod:`.data` (simulate, evaluate, save, read_locs),
:mod:`.runs` (run). Import from ``live_decode``, not from here.
"""
