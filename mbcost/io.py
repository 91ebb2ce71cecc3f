"""Safe file writes shared by the library and the CLI: never half a file, never a lost one; and ``quiet``, what
keeps another library's prints, warnings and log lines off mbcost's output while it runs.

``write_text_atomic`` replaces a file through a temporary file in the same directory and a
rename, so a reader sees either the old content or the new, never a mix; ``append_text``
adds to a file without touching what it already holds. Failures raise ``UsageError`` with a
one-line reason (the CLI prints it and exits 2).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mbcost.errors import SpecError, UsageError

__all__ = ["append_text", "check_target", "display_path", "jsonable", "quiet", "write_text_atomic"]


def jsonable(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in dicts, lists, tuples) replaced by ``None``: JSON has no NaN
    (a zero-time division)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def cache_dir(name: str, override: str | None = None) -> Path:
    """``$XDG_CACHE_HOME/mbcost/NAME`` (``~/.cache/mbcost/NAME`` by default), or the environment variable
    ``override`` when it is set (``MBCOST_PROFILE_DIR``...)."""
    if override and os.environ.get(override):
        return Path(os.environ[override])
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "mbcost" / name


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` (its directory must exist) through a temporary file and ``os.replace``;
    ``UsageError`` when the directory is missing, ``path`` is a directory, or the write fails."""
    path = Path(path)
    check_target(path, "cannot write")
    target = path.resolve() if path.is_symlink() else path  # a link stays: the file it points at is replaced
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        # mkstemp creates 0600: keep the mode of the file being replaced, else a plain 0644
        os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def append_text(path: Path | str, text: str) -> None:
    """Append ``text`` (UTF-8) to ``path``, creating it if needed; ``UsageError`` when it cannot be opened."""
    path = Path(path)
    try:
        with open(path, "a", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    except OSError as exc:
        raise UsageError(f"cannot append to {path}: {exc.strerror or exc}") from None


def check_target(path: Path | str | None, option: str) -> None:
    """Fail early (``SpecError``, one line naming ``option``) when ``path`` cannot be written or
    appended to, before any work is done. ``None`` (no file asked for) passes."""
    if path is None:
        return
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise SpecError(f"{option} {path}: it is a directory")
    if not parent.is_dir():
        raise SpecError(f"{option} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SpecError(f"{option} {path}: it is not writable")


def display_path(path: Path | str) -> str:
    """``path`` relative to the current directory when it lies below it, else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence a library's prints, warnings and logging for the duration of a count; restore after."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
