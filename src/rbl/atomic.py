"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

TEMP_ATTEMPTS = 100  # fresh random names tried before giving up (a clash is ~1 in 2**48 per try)


def _create_temporary(folder: Path, name: str, suffix: str) -> Path:
    """Create a new empty hidden file `.<name>.<random>.tmp<suffix>` in `folder`, as open() would.

    Not tempfile.mkstemp: it creates files with mode 0600 whatever the umask, so outputs on a shared
    project folder would be unreadable to colleagues. Created with O_EXCL and mode 0666, the kernel
    applies the umask (and any default ACL of the folder) exactly as for a plain open(path, "w").
    """
    for _ in range(TEMP_ATTEMPTS):
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{folder}: no free temporary name for {name} after {TEMP_ATTEMPTS} tries")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the final suffix so libraries that dispatch on it (numpy, torch,
    pandas) write the intended format. The file ends with the mode a plain open() would give it
    (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temporary(path.parent, path.name, path.suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# A cell that csv.writer (QUOTE_MINIMAL) would quote holds one of these: the delimiter, the quote, a line end.
_QUOTED = (",", '"', "\r", "\n")


def _needs_quotes(cells: list[str]) -> bool:
    text = "".join(cells)
    return any(char in text for char in _QUOTED)  # (four substring searches: a regex took longer)


def plain_csv(header: list[str], columns: list[list]) -> str | None:
    """The CSV text csv.writer would write (lineterminator "\n") for string columns of two or more,
    when no cell needs quotes; else None (write it with csv.writer or pandas).

    At 100,000 rows the csv module took 0.24 s for the clips' hash table (0.08 s joined here), and
    pandas 0.35 s for the manifest (0.15 s) (benchmarks/README.md, "Measurements behind the code").
    """
    if len(header) < 2 or any(type(v) is not str for column in columns for v in column):
        return None  # (csv.writer writes a lone empty cell as "")
    if _needs_quotes(header) or any(map(_needs_quotes, columns)):
        return None
    lines = [",".join(header), *map(",".join, zip(*columns, strict=True)), ""]
    return "\n".join(lines)


def write_csv_rows(path: str | os.PathLike, header: list[str], rows: list[list[str]]) -> None:
    """Write a CSV of string rows to `path` atomically (the generators' taxonomy and annotations)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buf.getvalue())
