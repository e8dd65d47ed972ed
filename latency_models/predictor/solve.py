"""The solver: the design matrix of a fit and the robust least-squares problem over the shared
costs and the group calibrations (``SolveOptions``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..featureset import (
    LatencyFeatures,
)
from ..measurements import Measurement
from .artifact import COMPUTE_CLASSES, compute_class, feature_row


@dataclass
class _Design:
    x: np.ndarray  # (rows, features), scaled
    log_y: np.ndarray
    fallback: np.ndarray
    op_count: np.ndarray  # operations per row (all categories), for SolveOptions.fallback="ops"
    group_index: np.ndarray
    class_index: np.ndarray
    groups: list[str]
    classes: list[str]
    weight: np.ndarray  # per row, of its squared residual (mean 1)
    family_index: np.ndarray


def _design(rows: Sequence[Measurement], features: Sequence[LatencyFeatures],
            names: Sequence[str], scale: np.ndarray, balance: float = 0.0) -> _Design:
    groups = sorted({m.group for m in rows})
    classes = [c for c in COMPUTE_CLASSES if any(compute_class(m.compute_unit) == c for m in rows)]
    families = sorted({m.family_name for m in rows})
    cells: dict[tuple[str, str], int] = {}
    for m in rows:
        cells[m.group, m.family_name] = cells.get((m.group, m.family_name), 0) + 1
    weight = np.array([cells[m.group, m.family_name] ** -balance for m in rows])
    return _Design(
        x=np.array([feature_row(f, names) for f in features]) / scale,
        log_y=np.log([m.latency_ms for m in rows]),
        fallback=np.array([m.fallback for m in rows], dtype=float),
        op_count=np.array([f.total("count") for f in features]),
        group_index=np.array([groups.index(m.group) for m in rows]),
        class_index=np.array([classes.index(compute_class(m.compute_unit)) for m in rows]),
        groups=groups, classes=classes, weight=weight / weight.mean(),
        family_index=np.array([families.index(m.family_name) for m in rows]),
    )


@dataclass(frozen=True)
class SolveOptions:
    """Fit hyper-parameters beyond the ridge (defaults: the shipped method).

    ``balance``: each row's squared residual is weighted by ``n ** -balance``, ``n`` the rows its
    family has in its group (0: every row counts the same; 1: every family in a group counts the
    same). ``family_ridge``: when set, each family gets its own shift of log latency, shared by
    its rows in every group and pulled towards 0 with this strength, so that a family that is
    slow or fast for reasons the features do not see moves its own shift instead of the shared
    costs (a random effect; new candidates are predicted without one). ``loss`` and
    ``f_scale``: SciPy's robust loss, and the log error where it turns from squared to linear.
    """

    balance: float = 0.0
    family_ridge: float | None = None
    # 0.03 (v2.2; 0.3 before): chosen by leave-one-family-out (benchmarks/latency_fitopts.py).
    # Beyond +-3% a row's log error counts linearly (an L1 fit), so a few rows that disagree
    # with the rest (Neural Engine fallbacks, inconsistent protocols) bend the shared costs less.
    f_scale: float = 0.03
    loss: str = "soft_l1"
    # when set: latency = scale * cost ** e + offset with one exponent e per compute class, its
    # log pulled towards 0 (e = 1) with this strength (measured in latency_fitopts.py)
    power_ridge: float | None = None
    # how a Neural Engine fallback row is charged: "scale", one learned factor on its latency;
    # "ops", a learned cost per operation of the model added to its cost (a fallback is a round
    # trip between the Neural Engine and the CPU per unsupported op, whatever the width);
    # "constant", one learned cost added to every fallback row's (the round trips dominate);
    # "scale+constant", both a factor and an added cost
    fallback: str = "scale"
    # pull of each group's log scale and log offset towards the mean over the groups of its
    # compute class. 0.3 for the scales (v2.4; 0.05 towards every group's mean before): a
    # held-out family leaves its groups fewer rows, whose scale and offset then trade against
    # each other; chosen by leave-one-family-out (benchmarks/latency_fitopts.py: 0.05 / 0.15 /
    # 0.3 / 0.5 / 1). The penalties pass through the robust loss too, so beyond the loss
    # scale the pull is a constant force, which a group of many rows overrides.
    scale_ridge: float = 0.3
    offset_ridge: float = 0.05


def single_threaded_blas() -> Any:
    """A context in which every loaded BLAS (NumPy's and SciPy's OpenBLAS are two libraries)
    runs on one thread. The fit's matrices are small (a few hundred rows), so thread start-up and
    spinning cost more than they save: on 2 cores the 467-row fit takes 8 s on one thread
    against 22 s on the default two (README). Call it after SciPy's modules are imported, or
    their BLAS is not yet loaded to be limited."""
    from threadpoolctl import threadpool_limits  # lazy, like scipy

    return threadpool_limits(limits=1, user_api="blas")


def _solve(d: _Design, measure_index: np.ndarray, ridge: float,
           options: SolveOptions = SolveOptions()) -> dict[str, Any]:
    nc, nf, ng = len(d.classes), d.x.shape[1], len(d.groups)
    nm = int(measure_index.max()) + 1
    nfam = int(d.family_index.max()) + 1
    per_family = options.family_ridge is not None
    power = options.power_ridge is not None
    if options.fallback not in ("scale", "ops", "constant", "scale+constant"):
        raise ValueError(f"SolveOptions.fallback must be scale, ops, constant or "
                         f"scale+constant, not {options.fallback!r}")
    # a fallback's factor on latency (index 0 of its block) and/or added cost (the last index)
    factor = options.fallback in ("scale", "scale+constant")
    per_op = options.fallback != "scale"  # an added cost, per operation or per model
    fb_ops = d.fallback * (d.op_count if options.fallback == "ops" else 1.0)
    n_fb = int(factor) + int(per_op)
    # parameter blocks: mu, delta, log scale, log offset, fallback, family shifts, log exponents
    sizes = [nc * nm, nc * nf, ng, ng, n_fb, nfam if per_family else 0, nc if power else 0]
    bounds = np.cumsum([0, *sizes])

    def unpack(p: np.ndarray) -> tuple[np.ndarray, ...]:
        mu, delta, log_scale, log_offset, phi, shift, log_e = (
            p[bounds[i]:bounds[i + 1]] for i in range(7))
        return (mu.reshape(nc, nm), delta.reshape(nc, nf), log_scale, log_offset, phi,
                shift if per_family else np.zeros(nfam), log_e if power else np.zeros(nc))

    n = len(d.log_y)
    rows = np.arange(n)
    root_w = np.sqrt(d.weight)
    # (block, strength, centred) of the penalty rows after the data rows: the group
    # calibrations (blocks 2, 3) are pulled towards their (class's) mean, the others towards 0
    penalties = [
        (1, ridge, False), (2, options.scale_ridge, True), (3, options.offset_ridge, True),
        *([(5, options.family_ridge, False)] if per_family else []),
        *([(6, options.power_ridge, False)] if power else []),
    ]

    def forward(p: np.ndarray) -> tuple[np.ndarray, ...]:
        mu, delta, log_scale, log_offset, phi, shift, log_e = unpack(p)
        w = np.exp(mu[:, measure_index] + delta)
        terms = d.x * w[d.class_index]  # (rows, features): cost contributed by each feature
        scale = np.exp(log_scale[d.group_index])
        offset = np.exp(log_offset[d.group_index])
        cost = terms.sum(axis=1)
        e = np.exp(log_e[d.class_index])
        powered = scale * cost**e  # the group-scaled cost term of each row
        added = scale * np.exp(phi[-1]) * fb_ops if per_op else np.zeros(n)
        total = powered + added + offset
        log_pred = np.log(total) + shift[d.family_index] + (
            phi[0] * d.fallback if factor else 0.0)
        return terms, cost, e, powered, added, offset, total, log_pred

    # centring matrix of the calibration penalties: v - (mean of v over its class's groups)
    group_class = np.zeros(ng, dtype=int)
    group_class[d.group_index] = d.class_index
    same = (group_class[:, None] == group_class[None, :]).astype(float)
    centring = np.eye(ng) - same / same.sum(axis=1, keepdims=True)

    def residuals(p: np.ndarray) -> np.ndarray:
        *_, log_pred = forward(p)
        # Ridge on delta (shared cost per measure), and a pull of each group's calibration
        # towards its class's others', so groups with one or two rows stay identifiable.
        pulled = [p[bounds[b]:bounds[b + 1]] for b, _, _ in penalties]
        return np.concatenate([root_w * (log_pred - d.log_y), *(
            strength * (centring @ v if centred else v)
            for v, (_, strength, centred) in zip(pulled, penalties, strict=True))])

    def jacobian(p: np.ndarray) -> np.ndarray:
        terms, cost, e, powered, added, offset, total, _ = forward(p)
        jac = np.zeros((n + sum(sizes[b] for b, _, _ in penalties), bounds[-1]))
        # d log(total) / d delta[c(i), j]
        dterms = terms * (powered * e / (cost * total))[:, None]
        by_measure = np.stack([dterms[:, measure_index == m].sum(axis=1) for m in range(nm)], 1)
        for c in range(nc):
            mine = d.class_index == c
            jac[:n, bounds[1] + c * nf:bounds[1] + (c + 1) * nf][mine] = dterms[mine]
            jac[:n, bounds[0] + c * nm:bounds[0] + (c + 1) * nm][mine] = by_measure[mine]
        jac[rows, bounds[2] + d.group_index] = (powered + added) / total
        jac[rows, bounds[3] + d.group_index] = offset / total
        if power:
            jac[rows, bounds[6] + d.class_index] = powered * e * np.log(cost) / total
        if factor:
            jac[:n, bounds[4]] = d.fallback
        if per_op:
            jac[:n, bounds[4] + n_fb - 1] = added / total
        if per_family:
            jac[rows, bounds[5] + d.family_index] = 1.0
        jac[:n] *= root_w[:, None]
        row = n
        for b, strength, centred in penalties:
            block: np.ndarray = centring if centred else np.eye(sizes[b])
            jac[row:row + sizes[b], bounds[b]:bounds[b + 1]] = strength * block
            row += sizes[b]
        return jac

    p0 = np.concatenate([np.full(nc * nm, -3.0), np.zeros(nc * nf), np.zeros(ng),
                         np.full(ng, -2.0), {"scale": [1.0], "ops": [-5.0], "constant": [1.0],
                                             "scale+constant": [0.0, 1.0]}[options.fallback],
                         np.zeros(sizes[5] + sizes[6])])
    from scipy import optimize  # lazy: only fitting needs it

    settings: dict[str, Any] = {"jac": jacobian, "loss": options.loss, "f_scale": options.f_scale,
                                "max_nfev": 4000}
    with single_threaded_blas():
        try:
            sol = optimize.least_squares(residuals, p0, **settings)
        except np.linalg.LinAlgError:  # LAPACK's SVD can fail to converge on a finite Jacobian
            sol = optimize.least_squares(residuals, p0, tr_solver="lsmr", **settings)
    mu, delta, log_scale, log_offset, phi, _, log_e = unpack(sol.x)
    return {"w": np.exp(mu[:, measure_index] + delta), "scale": np.exp(log_scale),
            "offset": np.exp(log_offset), "phi": phi[:1] if factor else np.zeros(1),
            "fallback_cost": float(np.exp(phi[-1])) if per_op else 0.0,
            "exponents": np.exp(log_e) if power else None}
