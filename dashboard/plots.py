"""Charts as pure functions of DataFrames (no storage, no Streamlit): easy to test.

Vega-Lite charts (Altair) everywhere except the Optuna insights page, whose figures come from
``optuna.visualization`` as plotly: plotly's browser bundle (4.7 MB) took about 1 s to load and
compile, and 10,000 points another second to draw, on the pages users open most; Vega's bundle
is a sixth of that (``benchmarks/dashboard_speed.py``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd
import plotly.graph_objects as go

from search_spaces import ArchConfig

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def filter_trials(df: pd.DataFrame, *, feasible_only: bool = False,
                  latency: tuple[float, float] | None = None,
                  attn: tuple[int, int] | None = None,
                  params_m: tuple[float, float] | None = None,
                  mixers: Sequence[str] | None = None) -> pd.DataFrame:
    """The complete trials that pass the explorer's filters; ``mixers``: the token mixers
    (letters A, M, S) a trial may use, all of its attention blocks' among them."""
    out = df[df["state"] == "complete"]
    if mixers is not None:
        allowed = set(mixers)
        out = out[[set(used) <= allowed for used in out["mixers"].map(mixers_used)]]
    if feasible_only:
        out = out[out["feasible"] == True]  # noqa: E712
    for col, rng in (("latency_ms", latency), ("attn_blocks", attn), ("params_m", params_m)):
        if rng is not None:
            out = out[(out[col] >= rng[0]) & (out[col] <= rng[1])]
    return out


# the Pareto chart's numbers (float32: the tooltips show at most 3 decimals)
NUMERIC = ["latency_ms", "accuracy_score", "latency_low_ms", "latency_high_ms", "params_m",
           "gmacs", "attn_blocks"]
CANVAS_FROM = 2000  # points; Streamlit's own threshold for single charts
PICK = "pick"  # the Pareto chart's point selection: its value names the study and trial
KINDS = ("trial", "infeasible", "Pareto front")
_TOOLTIP = [
    alt.Tooltip("study:N"), alt.Tooltip("trial:Q"), alt.Tooltip("accuracy_score:Q", format=".3f"),
    alt.Tooltip("latency_ms:Q", title="latency (ms)", format=".3f"),
    alt.Tooltip("latency_low_ms:Q", title="90% low (ms)", format=".2f"),
    alt.Tooltip("latency_high_ms:Q", title="90% high (ms)", format=".2f"),
    alt.Tooltip("params_m:Q", title="params (M)", format=".2f"),
    alt.Tooltip("gmacs:Q", title="GMACs", format=".3f"), alt.Tooltip("attn_blocks:Q"),
    alt.Tooltip("mixers:N", title="mixers (A/M/S)"),
]


def pareto_points(studies: Sequence[tuple[str, pd.DataFrame, float]]) -> pd.DataFrame:
    """One row per plotted trial: the chart's data. ``kind`` is trial, infeasible or Pareto
    front; the architecture key is kept for the front only (10,000 keys are ~0.6 MB)."""
    parts = []
    for name, df, _ in studies:
        kind = pd.Series("trial", index=df.index).mask(df["feasible"] != True, "infeasible")  # noqa: E712
        kind = kind.mask(df["pareto"] == True, "Pareto front")  # noqa: E712
        parts.append(df[NUMERIC].astype("float32").assign(
            trial=df["trial"].astype("int64"), study=name, kind=kind,
            mixers=df.get("mixers", ""),
            arch_key=df["arch_key"].where(kind == "Pareto front")))
    columns = ["study", "kind", "trial", *NUMERIC, "mixers", "arch_key"]
    return pd.concat(parts)[columns] if parts else pd.DataFrame(columns=columns)


def pareto_chart(studies: Sequence[tuple[str, pd.DataFrame, float]],
                 references: pd.DataFrame | None = None) -> alt.LayerChart:
    """Accuracy score vs predicted latency. Per study (name, filtered trials, budget): every
    trial faded, infeasible ones as crosses, the Pareto front highlighted and joined, the
    budget as a dashed rule; SwiftFormer presets as labelled diamonds. Clicking a trial selects
    it (selection ``PICK``: its study and trial). Names are data: Vega draws them as text and
    its tooltips escape HTML."""
    points = pareto_points(studies)
    pick = alt.selection_point(name=PICK, fields=["study", "trial"], on="click", empty=False)
    several = len(studies) > 1
    color = alt.Color("study:N", scale=alt.Scale(domain=[s[0] for s in studies],
                                                 range=COLORS[:len(studies)] or COLORS[:1]),
                      legend=alt.Legend(orient="bottom") if several else None)
    x = alt.X("latency_ms:Q", title="predicted latency (ms)", scale=alt.Scale(zero=False))
    y = alt.Y("accuracy_score:Q", title="accuracy score", scale=alt.Scale(zero=False))
    shapes = alt.Scale(domain=list(KINDS), range=["circle", "cross", "circle"])
    base = alt.Chart(points).encode(x=x, y=y, color=color)
    faded = base.transform_filter(alt.datum.kind != "Pareto front").mark_point(
        filled=True, opacity=0.25, size=40).encode(
        shape=alt.Shape("kind:N", scale=shapes, legend=alt.Legend(
            orient="bottom", title=None, symbolOpacity=1)),
        tooltip=_TOOLTIP).add_params(pick)
    front = base.transform_filter(alt.datum.kind == "Pareto front")
    line = front.mark_line(interpolate="step-after").encode(detail="study:N")
    marks = front.mark_point(filled=True, size=110, opacity=1, stroke="black",
                             strokeWidth=1).encode(
        shape=alt.Shape("kind:N", scale=shapes),
        tooltip=[*_TOOLTIP, alt.Tooltip("arch_key:N", title="architecture")]).add_params(pick)
    budgets = pd.DataFrame({"study": [s[0] for s in studies],
                            "budget_ms": [float(s[2]) for s in studies]})
    budgets["label"] = [(f"{s}: " if several else "") + f"budget {b:g} ms"
                        for s, b in zip(budgets["study"], budgets["budget_ms"], strict=True)]
    rule = alt.Chart(budgets).encode(x="budget_ms:Q", color=color)
    layers: list[Any] = []
    if references is not None and len(references):
        refs = alt.Chart(references.assign(
            label=[n.removeprefix("SwiftFormer-") for n in references["name"]])).encode(
            x="latency_ms:Q", y="accuracy_score:Q",
            tooltip=[alt.Tooltip("name:N"), alt.Tooltip("accuracy_score:Q", format=".3f"),
                     alt.Tooltip("latency_ms:Q", format=".3f")])
        # under the trials: a new study's first trials are the presets themselves, and their
        # points must stay clickable on top of the (larger) diamonds
        layers += [refs.mark_point(shape="diamond", filled=True, size=260, color="black",
                                   opacity=0.7),
                   refs.mark_text(align="left", dx=9, dy=9, color="black").encode(text="label:N")]
    layers += [faded, line, marks, rule.mark_rule(strokeDash=[6, 4]),
               rule.mark_text(align="left", dx=4, dy=-6, baseline="bottom").encode(
                   text="label:N", y=alt.value(0))]
    # Streamlit picks SVG for a layered chart whatever its size: 10,000 SVG paths took the
    # browser 1.3 s to lay out. SVG below that keeps every point a labelled element.
    renderer = "canvas" if len(points) > CANVAS_FROM else "svg"
    return alt.LayerChart(layer=layers).properties(
        height=560, usermeta={"embedOptions": {"renderer": renderer}})


TOP1_SOURCES = ("measured top-1", "predicted top-1 (90% interval)")


def trained_front_chart(df: pd.DataFrame) -> alt.LayerChart:
    """The front of a study that trains it, in top-1: measured points filled, predicted ones
    hollow with their 90% interval as a bar; the legend names both."""
    x = alt.X("latency_ms:Q", title="predicted latency (ms)", scale=alt.Scale(zero=False))
    source = alt.Shape("source:N", scale=alt.Scale(domain=list(TOP1_SOURCES),
                                                   range=["circle", "diamond"]),
                       legend=alt.Legend(orient="bottom", title=None))
    base = alt.Chart(df).encode(x=x)
    bars = base.transform_filter(alt.datum.source == TOP1_SOURCES[1]).mark_rule(
        color="#9467bd", opacity=0.6).encode(y=alt.Y("low:Q", title="top-1 (%)",
                                                     scale=alt.Scale(zero=False)), y2="high:Q")
    points = base.mark_point(size=110, strokeWidth=2).encode(
        y=alt.Y("top1:Q", title="top-1 (%)", scale=alt.Scale(zero=False)), shape=source,
        color=alt.Color("source:N", scale=alt.Scale(domain=list(TOP1_SOURCES),
                                                    range=["#2ca02c", "#9467bd"]), legend=None),
        fill=alt.condition(alt.datum.source == TOP1_SOURCES[0], alt.value("#2ca02c"),
                           alt.value("white")),
        tooltip=[alt.Tooltip("trial:Q"), alt.Tooltip("source:N"),
                 alt.Tooltip("top1:Q", format=".2f"), alt.Tooltip("low:Q", format=".1f"),
                 alt.Tooltip("high:Q", format=".1f"),
                 alt.Tooltip("latency_ms:Q", format=".3f")])
    return alt.LayerChart(layer=[bars, points]).properties(height=320)


def mixers_used(short: object) -> set[str]:
    """The mixer letters (A, M, S) of a trial's ``mixers`` column (``A M4 - S``)."""
    return {part[0] for part in str(short).split() if part != "-"}


# the architecture chart's block colours: conv grey, attention by its mixer
BLOCK_COLOURS = {"conv block": "#9e9e9e", "additive attention": "#ff7f0e",
                 "multi-head self-attention": "#d62728", "separable attention": "#1f77b4"}
_MIXER_BLOCK = {"additive": "additive attention", "mhsa": "multi-head self-attention",
                "separable": "separable attention"}


def architecture_chart(arch: ArchConfig) -> alt.LayerChart:
    """Blocks per stage: grey conv blocks, attention blocks coloured by their token mixer;
    width scales box height."""
    blocks, labels = [], []
    max_w = max(arch.widths)
    x = 0.0
    for i, stage in enumerate(arch.stages):
        h = 0.3 + 0.7 * stage.width / max_w
        for kind in stage.block_kinds():
            blocks.append({"x0": x, "x1": x + 0.9, "y0": -h / 2, "y1": h / 2, "stage": i,
                           "block": _MIXER_BLOCK[stage.mixer] if kind == "attn"
                           else "conv block"})
            x += 1
        labels.append({"x": x - stage.depth / 2 - 0.05, "y": -0.62,
                       "text": f"stage {i}: {stage.width} ch, MLP x{stage.mlp_ratio:g}"})
        x += 0.8
    hidden = alt.Axis(labels=False, ticks=False, domain=False, grid=False, title=None)
    xs = alt.Scale(domain=[-0.5, x], nice=False, zero=False)
    ys = alt.Scale(domain=[-0.75, 0.6], nice=False, zero=False)
    rects = alt.Chart(pd.DataFrame(blocks)).mark_rect().encode(
        x=alt.X("x0:Q", scale=xs, axis=hidden), x2="x1", y=alt.Y("y0:Q", scale=ys, axis=hidden),
        y2="y1", color=alt.Color("block:N", scale=alt.Scale(
            domain=[b for b in BLOCK_COLOURS if b in {r["block"] for r in blocks}],
            range=[c for b, c in BLOCK_COLOURS.items() if b in {r["block"] for r in blocks}]),
            legend=alt.Legend(orient="top", title=None)),
        tooltip=["stage:Q", "block:N"])
    text = alt.Chart(pd.DataFrame(labels)).mark_text().encode(
        x=alt.X("x:Q", scale=xs), y=alt.Y("y:Q", scale=ys), text="text:N")
    return alt.LayerChart(layer=[rects, text]).properties(height=200).configure_view(
        strokeWidth=0)


def latency_chart(df: pd.DataFrame) -> alt.LayerChart:
    """Predicted vs measured latency (log-log), one colour per origin, with the y = x line.
    Model, group and origin names are data: Vega draws them as text, its tooltips escape HTML."""
    have = df.dropna(subset=["predicted_ms"])[["measured_ms", "predicted_ms", "origin", "model",
                                                "group"]].astype({"origin": str})
    lo = float(min(have["measured_ms"].min(), have["predicted_ms"].min())) if len(have) else 0.1
    hi = float(max(have["measured_ms"].max(), have["predicted_ms"].max())) if len(have) else 10
    x = alt.X("measured_ms:Q", title="measured (ms)", scale=alt.Scale(type="log"))
    y = alt.Y("predicted_ms:Q", title="predicted (ms)", scale=alt.Scale(type="log"))
    points = alt.Chart(have).mark_circle(size=50, opacity=0.8).encode(
        x=x, y=y, color=alt.Color("origin:N", legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["model:N", "group:N", alt.Tooltip("measured_ms:Q", format=".3f"),
                 alt.Tooltip("predicted_ms:Q", format=".3f")])
    diagonal = alt.Chart(pd.DataFrame({"measured_ms": [lo, hi], "predicted_ms": [lo, hi]})
                         ).mark_line(strokeDash=[2, 3], color="grey").encode(x=x, y=y)
    return alt.LayerChart(layer=[points, diagonal]).properties(height=480)


def importance_figure(importances: dict[str, float], top: int = 12) -> go.Figure:
    """The ``top`` parameter importances as horizontal bars, the largest on top."""
    items = sorted(importances.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(height=40 + 24 * max(len(items), 1), xaxis_title="importance",
                      margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


def progress_figure(studies: Sequence[tuple[str, pd.DataFrame]]) -> go.Figure:
    """Is the search still improving? Per study (name, trials): the best accuracy score among
    feasible complete trials so far, against the trial number."""
    fig = go.Figure()
    for i, (name, trials) in enumerate(studies):
        done = trials[(trials["state"] == "complete") & (trials["feasible"] == True)]  # noqa: E712
        done = done.sort_values("trial")
        fig.add_trace(go.Scatter(
            x=done["trial"], y=done["accuracy_score"].cummax(), mode="lines",
            name=html.escape(name),
            line={"shape": "hv", "color": COLORS[i % len(COLORS)]},
            hovertemplate="trial %{x}: best score %{y:.3f}<extra>%{fullData.name}</extra>",
        ))
    fig.update_layout(xaxis_title="trial", yaxis_title="best feasible accuracy score",
                      height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "y": -0.25})
    return fig
