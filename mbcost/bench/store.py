"""The JSON Lines store: records appended one line at a time, read back tolerantly.

A record is written and flushed the moment it is measured, so Ctrl-C in the middle of a sweep
keeps everything finished before it. Files from several machines and GPUs are merged by reading
them together with ``load_records``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from mbcost.errors import SpecError
from mbcost.io import jsonable

__all__ = ["UNREADABLE", "RecordWriter", "check_appendable", "jsonable", "load_records", "record_line"]

log = logging.getLogger(__name__)


def record_line(record: Any) -> str:
    """One record (a ``Record`` or a plain dict) as one line of JSON, without the newline."""
    d = record.to_dict() if hasattr(record, "to_dict") else dict(record)
    return json.dumps(jsonable(d), separators=(",", ":"), allow_nan=False)


def check_appendable(path: Path | None) -> None:
    """Fail early (one line, exit 2) when ``--save`` cannot be appended to, before measuring anything."""
    from mbcost.io import check_target

    check_target(path, "--save")


class RecordWriter:
    """Appends records to a JSON Lines file, flushing each one.

    A file left with a truncated last line (an earlier run killed mid-write) gets a newline
    first, so the new records start on lines of their own.

    Example:
        >>> with RecordWriter(path) as out:          # doctest: +SKIP
        ...     out.write(record)
    """

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path is not None else None
        self.written = 0
        self._fh: Any = None

    def __enter__(self) -> RecordWriter:
        if self.path is not None:
            check_appendable(self.path)
            needs_newline = False
            if self.path.exists() and self.path.stat().st_size > 0:
                with self.path.open("rb") as fh:
                    fh.seek(-1, os.SEEK_END)
                    needs_newline = fh.read(1) != b"\n"
            try:
                self._fh = self.path.open("a", encoding="utf-8")
            except OSError as exc:
                raise SpecError(f"cannot open {self.path} for appending: {exc.strerror or exc}") from None
            if needs_newline:
                self._fh.write("\n")
                self._fh.flush()
        return self

    def write(self, record: Any) -> None:
        """Append one record and flush it to the operating system."""
        if self._fh is None:
            return
        self._fh.write(record_line(record) + "\n")
        self._fh.flush()
        self.written += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


#: ``kind`` of the placeholder ``load_records(..., placeholders=True)`` puts where a line is unreadable.
UNREADABLE = "_unreadable"


def load_records(paths: Path | str | Iterable[Path | str], *, placeholders: bool = False) -> list[dict[str, Any]]:
    """Every record of one or more JSON Lines files, in file order.

    Blank lines are skipped. A line that is not a JSON object (a record cut short when a run was
    killed, or two appends glued together) is skipped with a logged warning naming the file and
    line; with ``placeholders=True`` it becomes ``{"kind": UNREADABLE, "_line": n}`` instead, and
    every record carries ``_source`` (its file), so a reader such as the report can say what it
    left out. Unknown ``kind`` values are kept (readers ignore kinds they do not know).

    Raises:
        SpecError: a file that does not exist or cannot be read.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[dict[str, Any]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            raise SpecError(f"results file {path} is a directory, not a file; give the JSON Lines file written by "
                            f"--save (e.g. {path / 'results.jsonl'})")
        if not path.is_file():
            raise SpecError(f"results file {path} does not exist (no such file)")
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from None
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            if not isinstance(obj, dict):
                where = "truncated last line" if number >= len(lines) - 1 else "malformed line"
                log.warning("%s:%d: skipping a %s (%d characters)", path, number, where, len(line))
                if not placeholders:
                    continue
                obj = {"kind": UNREADABLE, "_line": number}
            if placeholders:
                obj.setdefault("_source", str(path))
            out.append(obj)
    return out
