"""Plotly figures as pure functions of DataFrames (no storage, no Streamlit): easy to test."""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from search_spaces import ArchConfig

_HOVER_NUMBERS = ("trial %{customdata[0]}<br>score %{y:.3f}<br>latency %{x:.3f} ms "
                  "(%{customdata[1]:.2f}-%{customdata[2]:.2f})<br>%{customdata[3]:.2f} M "
                  "params, %{customdata[4]:.3f} GMACs, %{customdata[5]} attention blocks")
HOVER_TRIAL = _HOVER_NUMBERS + "<extra>%{fullData.name}</extra>"
HOVER = _HOVER_NUMBERS + "<br>%{customdata[6]}<extra>%{fullData.name}</extra>"
NUMERIC = ["trial", "latency_low_ms", "latency_high_ms", "params_m", "gmacs", "attn_blocks"]
CUSTOM = [*NUMERIC, "arch_key"]
WEBGL_FROM = 2000  # points in one trace
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def filter_trials(df: pd.DataFrame, *, feasible_only: bool = False,
                  latency: tuple[float, float] | None = None,
                  attn: tuple[int, int] | None = None,
                  params_m: tuple[float, float] | None = None) -> pd.DataFrame:
    """The complete trials that pass the explorer's filters."""
    out = df[df["state"] == "complete"]
    if feasible_only:
        out = out[out["feasible"] == True]  # noqa: E712
    for col, rng in (("latency_ms", latency), ("attn_blocks", attn), ("params_m", params_m)):
        if rng is not None:
            out = out[(out[col] >= rng[0]) & (out[col] <= rng[1])]
    return out


def pareto_figure(studies: Sequence[tuple[str, pd.DataFrame, float]],
                  references: pd.DataFrame | None = None) -> go.Figure:
    """Accuracy score vs predicted latency. Per study (name, filtered trials, budget): every
    trial faded, infeasible ones as crosses, the Pareto front highlighted and joined, the
    budget as a vertical line; SwiftFormer presets as labelled diamonds."""
    fig = go.Figure()
    for i, (name, df, budget) in enumerate(studies):
        color = COLORS[i % len(COLORS)]
        label = f"{html.escape(name)}: " if len(studies) > 1 else ""  # plotly renders HTML
        for feasible, symbol in ((True, "circle"), (False, "x")):
            part = df[(df["feasible"] == feasible) & (df["pareto"] == False)]  # noqa: E712
            # SVG markers make the browser crawl beyond a few thousand points; WebGL does not
            scatter = go.Scattergl if len(part) > WEBGL_FROM else go.Scatter
            # numbers only (float32: the hover shows at most 3 decimals), which Plotly sends as
            # binary arrays; the architecture key is in the front's hover and the candidate
            # page. A 10,000-trial plot's JSON for the browser: 1.2 MB as text lists before.
            fig.add_trace(scatter(
                x=part["latency_ms"].to_numpy("float32"),
                y=part["accuracy_score"].to_numpy("float32"),
                mode="markers", name=f"{label}{'trials' if feasible else 'infeasible'}",
                marker={"color": color, "opacity": 0.25, "symbol": symbol, "size": 7},
                customdata=part[NUMERIC].to_numpy("float32"), hovertemplate=HOVER_TRIAL,
            ))
        front = df[df["pareto"] == True].sort_values("latency_ms")  # noqa: E712
        fig.add_trace(go.Scatter(
            x=front["latency_ms"], y=front["accuracy_score"], mode="markers+lines",
            name=f"{label}Pareto front", line={"color": color, "shape": "hv"},
            marker={"color": color, "size": 10, "line": {"color": "black", "width": 1}},
            customdata=front[CUSTOM].to_numpy(), hovertemplate=HOVER,
        ))
        fig.add_vline(x=budget, line_dash="dash", line_color=color,
                      annotation_text=f"{label}budget {budget:g} ms",
                      annotation_position="top left")
    if references is not None and len(references):
        fig.add_trace(go.Scatter(
            x=references["latency_ms"], y=references["accuracy_score"], mode="markers+text",
            name="SwiftFormer", text=[n.removeprefix("SwiftFormer-") for n in
                                      references["name"]],
            textposition="bottom right",
            marker={"symbol": "diamond", "size": 12, "color": "black"},
            hovertemplate="%{text}: score %{y:.3f}, %{x:.3f} ms<extra>SwiftFormer</extra>",
        ))
    fig.update_layout(xaxis_title="predicted latency (ms)", yaxis_title="accuracy score",
                      height=560, legend={"orientation": "h", "y": -0.15},
                      margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def architecture_figure(arch: ArchConfig) -> go.Figure:
    """Blocks per stage: grey conv blocks, orange attention blocks; width scales box height."""
    fig = go.Figure()
    max_w = max(arch.widths)
    x = 0.0
    for i, stage in enumerate(arch.stages):
        h = 0.3 + 0.7 * stage.width / max_w
        for kind in stage.block_kinds():
            color = "#ff7f0e" if kind == "attn" else "#9e9e9e"
            fig.add_shape(type="rect", x0=x, x1=x + 0.9, y0=-h / 2, y1=h / 2,
                          fillcolor=color, line={"width": 0})
            x += 1
        fig.add_annotation(x=x - stage.depth / 2 - 0.05, y=-0.62, showarrow=False,
                           text=f"stage {i}: {stage.width} ch, MLP x{stage.mlp_ratio:g}")
        x += 0.8
    for name, color in (("conv block", "#9e9e9e"), ("attention block", "#ff7f0e")):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name,
                                 marker={"symbol": "square", "size": 12, "color": color}))
    fig.update_xaxes(visible=False, range=[-0.5, x])
    fig.update_yaxes(visible=False, range=[-0.75, 0.6])
    fig.update_layout(height=200, margin={"l": 0, "r": 0, "t": 10, "b": 0},
                      legend={"orientation": "h"})
    return fig


def latency_figure(df: pd.DataFrame) -> go.Figure:
    """Predicted vs measured latency (log-log), one colour per origin, with the y = x line."""
    have = df.dropna(subset=["predicted_ms"])
    fig = go.Figure()
    for origin, part in have.groupby("origin"):
        fig.add_trace(go.Scatter(
            x=part["measured_ms"], y=part["predicted_ms"], mode="markers",
            name=html.escape(str(origin)),  # user file names and models: plotly renders HTML
            text=(part["model"] + " | " + part["group"]).map(html.escape),
            hovertemplate="%{text}<br>measured %{x:.3f} ms, predicted %{y:.3f} ms<extra></extra>",
        ))
    if len(have):
        lo = float(min(have["measured_ms"].min(), have["predicted_ms"].min()))
        hi = float(max(have["measured_ms"].max(), have["predicted_ms"].max()))
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                                 line={"dash": "dot", "color": "grey"}))
    fig.update_xaxes(type="log", title="measured (ms)")
    fig.update_yaxes(type="log", title="predicted (ms)")
    fig.update_layout(height=480, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


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
