"""Checks for the paths a command writes to (``--out``), before any work is done."""

from __future__ import annotations

import os
from pathlib import Path

from search_spaces import SwiftNASError


class OutputPathError(SwiftNASError, ValueError):
    """An output path that cannot be written as asked."""


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return False


def check_output_path(path: str | Path, *, folder: bool, flag: str = "--out",
                      example: str = "out.json") -> None:
    """Refuse, in one line, an output that is the wrong kind of thing, lies under a file or in
    a folder this process may not write to. ``folder``: the output is a folder to create;
    ``example``: a file name to suggest when a file's path names a folder."""
    out = Path(path)
    if out.exists():
        if folder and not out.is_dir():
            raise OutputPathError(f"{flag} {str(out)!r} is a file; give a folder path to create")
        if not folder and out.is_dir():
            raise OutputPathError(f"{flag} {str(out)!r} is a folder; give a file path such as "
                                  f"{str(out / example)!r}")
    existing = next((p for p in out.parents if p.exists()), Path("."))
    if not existing.is_dir():
        raise OutputPathError(f"{flag} {str(out)!r} lies under a file ({str(existing)!r}); give "
                              "a path in a folder")
    target = out if folder and out.exists() else existing
    if _read_only_fs(target):
        raise OutputPathError(f"{flag} {str(out)!r}: {str(target)!r} is on a read-only "
                              "filesystem; choose a path on a writable disk")
    if not os.access(target, os.W_OK | os.X_OK) or (
            not folder and out.exists() and not os.access(out, os.W_OK)):
        raise OutputPathError(f"{flag} {str(out)!r}: cannot write in {str(target)!r} "
                              "(permission denied); choose a path you may write to")
