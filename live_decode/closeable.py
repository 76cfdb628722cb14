"""Context-manager support shared by everything that holds a file or socket open."""

from __future__ import annotations

from typing import Self


class Closeable:
    """``with X(...) as x:`` calls ``x.close()`` on exit; subclasses implement ``close``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
