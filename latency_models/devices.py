"""Device names of imported measurements: one spelling per phone.

A typo must not become a new phone: ``"iphone 14 "`` would otherwise be stored beside
``iPhone 14`` and calibrated as a separate group, without a word. The rule, per name:

* equal to a known device once case and whitespace are ignored: stored under the known spelling;
* a near miss of a known device (the same model numbers, at most two letters edited, swapped,
  added or dropped, e.g. ``iPhnoe 14``): refused with "did you mean", unless the caller names it
  as new on purpose (``swiftnas latency import --new-device NAME``);
* anything else (``iPhone 17``, ``iPad Pro``) is a new phone: accepted, and reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from search_spaces.text import shell_word

from .measurements import Measurement, MeasurementError

NEAR_MISS_EDITS = 2  # typos this far from a known name are refused; farther is a new phone


def _folded(name: str) -> str:
    return "".join(name.split()).casefold()


def tidy_name(name: str) -> str:
    """``name`` with runs of whitespace made one space and the ends trimmed."""
    return " ".join(name.split())


def _edits(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, swaps."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def _numbers(name: str) -> list[str]:
    return re.findall(r"\d+", name)


def near_miss(name: str, known: Iterable[str]) -> str | None:
    """The known device ``name`` is most likely a misspelling of, or None. Names with other
    model numbers are never near misses (``iPhone 15`` is not a typo of ``iPhone 14``)."""
    folded = _folded(name)
    scored = [(_edits(folded, _folded(k)), k) for k in known
              if _numbers(k) == _numbers(name) and _folded(k) != folded]
    close = sorted(s for s in scored if s[0] <= NEAR_MISS_EDITS)
    return close[0][1] if close else None


def canonical_device(name: str, known: Sequence[str], *, new_devices: Iterable[str] = (),
                     where: str = "") -> tuple[str, bool]:
    """(the name to store, whether it is a new device) for ``name`` (see the module docstring).

    Raises MeasurementError for a near miss of a known device that is not in ``new_devices``."""
    tidy = tidy_name(name)
    by_folded = {_folded(k): k for k in known}
    if _folded(tidy) in by_folded:
        return by_folded[_folded(tidy)], False
    if _folded(tidy) in {_folded(n) for n in new_devices}:
        return tidy, True
    guess = near_miss(tidy, known)
    if guess is not None:
        prefix = f"{where}: " if where else ""
        raise MeasurementError(
            f"{prefix}unknown device {tidy!r}: did you mean {guess!r}? Fix the device column, or "
            f"to add a new phone by that name on purpose pass --new-device {shell_word(tidy)}"
        )
    return tidy, True


def known_devices(stored: Iterable[str] = ()) -> list[str]:
    """The phones the shipped predictor knows, plus ``stored`` (a storage's own), sorted."""
    from .defaults import load_default_predictor

    return sorted(set(load_default_predictor().devices()) | set(stored))


def canonical_devices(rows: Sequence[Measurement], known: Sequence[str], *,
                      new_devices: Iterable[str] = ()) -> tuple[list[Measurement], list[str]]:
    """Every row with its device spelled as known (see :func:`canonical_device`), and the new
    devices among them in order of appearance. The first near miss raises, so nothing is
    stored under a misspelt name."""
    new_devices = list(new_devices)
    out: list[Measurement] = []
    new: list[str] = []
    for m in rows:
        # a new phone spelled twice in one file is one phone
        device, is_new = canonical_device(m.device, [*known, *new], new_devices=new_devices,
                                          where=m.origin)
        if is_new and device not in new:
            new.append(device)
        out.append(m if device == m.device else replace(m, device=device))
    return out, new
