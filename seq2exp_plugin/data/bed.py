"""BED-like text tables read with errors that name the file and the line.

``read_bed(path, columns)`` reads a tab-separated (or whitespace-separated) BED file, skipping
blank lines and ``#``/``track``/``browser`` header lines; plain or gzip. ``columns`` names the
leading columns that must be present; ``int_columns`` must parse as integers and
``start <= end`` is checked when both ``start`` and ``end`` are present. Extra columns are kept
as ``col<i>``.
"""

from __future__ import annotations

import codecs
import gzip
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..errors import InputError

__all__ = ["read_bed", "open_text"]


def open_text(path: str | os.PathLike):
    """A text stream over a plain or gzip file; ``ValueError`` naming the file if its first
    bytes are not text (a bigWig, a checkpoint...), instead of a decoding error mid-read."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(8192)
        if b"\0" in head:
            raise UnicodeDecodeError("utf-8", head, head.index(b"\0"), len(head), "NUL byte")
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a cut last character is fine
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a text file ({exc.__class__.__name__}); expected tab-separated text, "
                         f"plain or gzip") from None
    return opener(path, "rt")


def read_bed(
    path: str | os.PathLike,
    columns: Sequence[str] = ("chrom", "start", "end"),
    int_columns: Sequence[str] = ("start", "end"),
    what: str = "BED file",
) -> pd.DataFrame:
    """Rows of a BED-like file as a DataFrame with ``columns`` (+ extras); line numbers in errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    columns = list(columns)
    ncol = len(columns)
    int_idx = [columns.index(c) for c in int_columns if c in columns]
    rows: list[list] = []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n\r")
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            if len(fields) < ncol:
                raise InputError(
                    f"{path}, line {lineno}: expected at least {ncol} columns "
                    f"({' '.join(columns)}), found {len(fields)}: {line[:80]!r}"
                )
            row: list = list(fields)
            for i in int_idx:
                try:
                    row[i] = int(fields[i])
                except ValueError:
                    raise InputError(
                        f"{path}, line {lineno}: column {i + 1} ({columns[i]}) is not an "
                        f"integer: {fields[i]!r}"
                    ) from None
            if "start" in columns and "end" in columns:
                s, e = row[columns.index("start")], row[columns.index("end")]
                if s < 0 or e < s:
                    raise InputError(f"{path}, line {lineno}: invalid interval start={s} end={e}")
            rows.append(row)
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in int_columns else object) for c in columns})
    maxw = max(len(r) for r in rows)
    names = columns + [f"col{i}" for i in range(ncol, maxw)]
    rows = [r + [None] * (maxw - len(r)) for r in rows]
    df = pd.DataFrame(rows, columns=names)
    for c in int_columns:
        if c in df.columns:
            df[c] = df[c].astype("int64")
    return df
