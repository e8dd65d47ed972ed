"""A family's own correction, learned from its measured rows (latency v3).

The shared per-operation costs are what lets the predictor price families it has never seen,
and they cannot bend for one family: they make SwiftFormer-L3 2.1x slower than XS on the
paper's phone, where the paper measures 2.7x. So after the shared fit, each family with
measurements gets a small model of its own log residuals ``r = log(measured / predicted)``::

    r ~ shift[family, group] + slope[family] * (log cost - centre[family])

- ``shift[f, g]``: the family's level in one measurement group (a table), pulled towards the
  family's own mean ``shift[f]``, which is pulled towards 0. A group where the family has no
  rows (a candidate on another phone) gets ``shift[f]``.
- ``slope[f]``: how the family's latency grows with its cost beyond what the shared costs say,
  pulled towards 0. ``cost`` is the shared model's cost of the row (``LatencyPredictor.cost``).

It is a second stage: the shared fit never sees it, so a family the predictor has never seen is
predicted exactly as before (leave-one-family-out is unchanged by construction), and a family
with measurements is predicted from its own rows. The pulls are chosen by leave-one-row-out
over the searched family's rows (``python -m benchmarks.latency_family``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FamilyOptions:
    """Pulls of the family stage (ridge strengths; one measured row weighs 1).

    Chosen over 125 settings (0.1-10 each; `python -m benchmarks.latency_family select`) by the
    mean of two errors on SwiftFormer's 11 rows: each row left out (4.90% MAPE, against 8.11%
    without the stage; 5.68% when each row's pulls are chosen on the other rows only) and each
    table left out (8.72%, the same as without the stage). A weak ``shift_pull`` is as good on
    single rows (4.82%) but carries one table's level to a new one (11.59%): strong, then, so
    that a phone the family was never measured on gets its slope and hardly any shift.
    """

    group_pull: float = 0.1  # shift[f, g] towards shift[f]
    shift_pull: float = 10.0  # shift[f] towards 0
    slope_pull: float = 0.3  # slope[f] towards 0


@dataclass
class FamilyCalibration:
    """One family's correction of log latency (module docstring). ``sigma_log``, when set, is
    the spread of the family's leave-one-row-out log errors: its predictions' intervals in the
    groups it was measured in use it instead of the group's."""

    shift: float
    slope: float
    centre: float  # mean log cost of the family's fitted rows
    group_shifts: dict[str, float]
    rows: int
    timm_names: list[str] = field(default_factory=list)  # how a timm model is known as one
    sigma_log: float | None = None
    interval_z: float | None = None

    def log_correction(self, group: str, log_cost: float) -> float:
        return self.group_shifts.get(group, self.shift) + self.slope * (log_cost - self.centre)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FamilyCalibration:
        return cls(shift=float(data["shift"]), slope=float(data["slope"]),
                   centre=float(data["centre"]),
                   group_shifts={str(g): float(v) for g, v in data["group_shifts"].items()},
                   rows=int(data["rows"]), timm_names=[str(n) for n in data["timm_names"]],
                   sigma_log=None if data.get("sigma_log") is None else float(data["sigma_log"]),
                   interval_z=None if data.get("interval_z") is None
                   else float(data["interval_z"]))

    def finite(self) -> bool:
        values = [self.shift, self.slope, self.centre, *self.group_shifts.values(),
                  self.sigma_log or 0.0, self.interval_z or 1.0]
        return all(math.isfinite(v) for v in values) and (self.sigma_log or 0.0) >= 0 and \
            (self.interval_z or 1.0) > 0


def fit_family(residuals: Sequence[float], log_costs: Sequence[float], groups: Sequence[str],
               options: FamilyOptions, *, timm_names: Sequence[str] = ()) -> FamilyCalibration:
    """The correction of one family from its rows' shared-model log residuals: ridge least
    squares on (shift per group, family shift, slope)."""
    r = np.asarray(residuals, dtype=float)
    x = np.asarray(log_costs, dtype=float)
    centre = float(x.mean())
    names = sorted(set(groups))
    n, k = len(r), len(names)
    # unknowns: shift[f, g] for each group, shift[f], slope[f]
    data = np.zeros((n, k + 2))
    for i, g in enumerate(groups):
        data[i, names.index(g)] = 1.0
    data[:, k + 1] = x - centre
    pulls = np.zeros((k + 2, k + 2))
    for j in range(k):
        pulls[j, j], pulls[j, k] = 1.0, -1.0  # shift[f, g] - shift[f]
    pulls[:k] *= math.sqrt(options.group_pull)
    pulls[k, k] = math.sqrt(options.shift_pull)
    pulls[k + 1, k + 1] = math.sqrt(options.slope_pull)
    solution = np.linalg.lstsq(np.vstack([data, pulls]), np.concatenate([r, np.zeros(k + 2)]),
                               rcond=None)[0]
    return FamilyCalibration(
        shift=float(solution[k]), slope=float(solution[k + 1]), centre=centre,
        group_shifts={g: float(solution[j]) for j, g in enumerate(names)}, rows=n,
        timm_names=sorted(set(timm_names) - {""}))
