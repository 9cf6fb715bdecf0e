"""File handles opened lazily, once per process.

DataLoader workers get copies of the dataset's readers (forked, or pickled under spawn and
forkserver). A handle opened in another process must not be used there, so every process opens
its own on first use, and pickling a reader drops its handle.
"""

from __future__ import annotations

import os

__all__ = ["PerProcessHandle"]


class PerProcessHandle:
    """Mixin for readers: define ``_open()``; ``_handle()`` returns this process's handle."""

    _opened = None
    _opened_by: int | None = None

    def _open(self):
        raise NotImplementedError

    def _handle(self):
        if self._opened is None or self._opened_by != os.getpid():
            self._opened = self._open()
            self._opened_by = os.getpid()
        return self._opened

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_opened": None, "_opened_by": None}

    def close(self) -> None:
        """Close this process's handle; one inherited from another process is left alone."""
        if self._opened is not None and self._opened_by == os.getpid() and hasattr(self._opened, "close"):
            self._opened.close()
        self._opened = None
