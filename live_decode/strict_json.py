"""Strict JSON for every file and line live_decode writes: ``null`` for NaN, integers as integers.

Python's :mod:`json` writes ``NaN`` and ``Infinity`` by default, which no strict parser (jq,
JavaScript, Go, ``json.loads(..., parse_constant=...)``) accepts, and NumPy scalars either fail
(``np.int64``) or come out as floats. :func:`to_jsonable` turns a value into plain JSON types:

- float NaN / ±inf (Python or NumPy) → ``None`` (JSON ``null``: "no value");
- NumPy integers → ``int``, NumPy floats → ``float``, NumPy bools → ``bool``;
- NumPy arrays and tuples → lists; :class:`pathlib.PurePath` → ``str``;
- mappings keep their (string) keys, in order.

:func:`dumps` serialises with ``allow_nan=False``, so anything missed raises instead of writing
invalid JSON; :func:`write_json` writes a file, atomically by default (a temporary file in the
same folder, then :func:`os.replace`), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np

JsonValue = Any
"""A value made only of None, bool, int, float, str, list and dict."""


def to_jsonable(value: Any) -> JsonValue:
    """``value`` with only JSON types: NaN/inf → None, NumPy scalars → Python numbers.

    Raises
    ------
    TypeError
        For a value JSON cannot represent (an object that is not a number, string, bool,
        sequence, mapping, array or path); the message names its type.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [to_jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(
        f"Cannot write a {type(value).__name__} as JSON; convert it to numbers, strings, lists or "
        "dicts first."
    )


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of ``value`` (see :func:`to_jsonable`); never contains ``NaN``."""
    separators = (",", ":") if indent is None else (",", ": ")
    return json.dumps(to_jsonable(value), indent=indent, allow_nan=False, separators=separators)


def write_json(
    path: str | os.PathLike[str], value: Any, *, indent: int | None = 2, atomic: bool = True
) -> Path:
    """Write ``value`` as strict JSON (+ newline) to ``path``; return the path.

    Parameters
    ----------
    path
        The file; overwritten.
    value
        Anything :func:`to_jsonable` accepts.
    indent
        Indentation (None: one line).
    atomic
        Write ``<path>.tmp`` and :func:`os.replace` it over ``path``: a reader (or a crash)
        sees the old file or the new one, never a partial one.
    """
    target = Path(path)
    text = dumps(value, indent=indent) + "\n"
    if not atomic:
        target.write_text(text, encoding="utf-8")
        return target
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target


def loads_strict(text: str | bytes) -> Any:
    """Parse JSON, refusing ``NaN``/``Infinity`` (ValueError), as strict parsers do."""

    def reject(constant: str) -> Any:
        raise ValueError(f"invalid JSON: {constant} is not a JSON value (write null instead)")

    return json.loads(text, parse_constant=reject)
