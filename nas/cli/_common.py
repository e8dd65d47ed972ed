"""Helpers shared by the command modules: output formats, consoles, loading architectures."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from search_spaces import ArchConfig

# markup off: study names, paths and messages are user text, and "oops[/bold]" in one of them
# must print as it is, not break the whole table (styles are given as objects where wanted)
console = Console(markup=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False)  # one-line messages stay one


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def print_json(data: Any) -> None:
    # Plain print, not rich: JSON must stay machine-readable (no wrapping, no colour).
    print(json.dumps(data, indent=2))


def load_arch(spec: str) -> ArchConfig:
    """An architecture from a preset name (``xs``) or a path to an ArchConfig JSON file."""
    from search_spaces import PRESETS, ArchConfig, SearchSpaceError, get_preset

    path = Path(spec)
    if path.is_dir():
        raise SearchSpaceError(
            f"Architecture file {spec!r} is a folder. Pass a path to an ArchConfig JSON file "
            f"(e.g. {str(path / 'arch.json')!r}) or a preset name ({', '.join(PRESETS)})."
        )
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise SearchSpaceError(
                f"Architecture file {spec!r} does not exist. Pass a path to an ArchConfig JSON "
                f"file or a preset name ({', '.join(PRESETS)})."
            )
        return ArchConfig.from_file(path)
    return get_preset(spec)
