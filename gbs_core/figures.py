"""Plotly figures for the command line's ``--html`` output and the Pruning and Sanity check pages.

Plain plotly (no Streamlit): each function takes result tables or arrays and returns a ``plotly.graph_objects.Figure``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = ["modularity_figure", "heatmap_figure", "motif_figure", "pruning_figure", "identification_heatmap",
           "sanity_bar_figure"]


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=60, r=20, t=60, b=60), template="plotly_white")
    return fig


def modularity_figure(table: pd.DataFrame, *, title: str = "Modularity") -> go.Figure:
    """Q per layer (``modularity_table``) with its spread, prunable layers marked."""
    fig = go.Figure(go.Scatter(x=table["layer"], y=table["q"], mode="lines+markers", name="Q",
                               error_y=dict(type="data", array=table["q_std"], visible=bool((table["q_std"] > 0).any()))))
    flagged = table[table["prunable"]]
    fig.add_trace(go.Scatter(x=flagged["layer"], y=flagged["q"], mode="markers", name="prunable (dQ < threshold)",
                             marker=dict(symbol="x", size=12, color="crimson")))
    fig.update_yaxes(title="modularity Q")
    return _layout(fig, title)


def heatmap_figure(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], *, title: str = "") -> go.Figure:
    fig = go.Figure(go.Heatmap(z=matrix, x=list(cols), y=list(rows), colorscale="Viridis"))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, height=520)


def motif_figure(table: pd.DataFrame, *, title: str = "Triangle motifs") -> go.Figure:
    fig = go.Figure()
    for col, name in [("same_class_fraction", "all one class"), ("two_classes_fraction", "two classes"),
                      ("all_different_fraction", "three classes")]:
        fig.add_trace(go.Bar(x=table["layer"], y=table[col], name=name))
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title="fraction of triangles")
    return _layout(fig, title)


def pruning_figure(table: pd.DataFrame, *, title: str = "Pruning") -> go.Figure:
    """Test accuracy before/after fine-tuning per model (``PruningResult.table()``), with the reductions in the labels."""
    labels = [v if v != "control" else f"control s{int(s)}" for v, s in zip(table["variant"], table["seed"], strict=True)]
    text = [f"-{p:.0f}% params, -{f:.0f}% FLOPs" for p, f in zip(table["params_reduction_pct"],
                                                                  table["flops_reduction_pct"], strict=True)]
    fig = go.Figure([
        go.Bar(x=labels, y=100 * table["accuracy_before_finetune"], name="before fine-tuning"),
        go.Bar(x=labels, y=100 * table["accuracy_after_finetune"], name="after fine-tuning", text=text,
               textposition="outside"),
    ])
    fig.update_yaxes(title="test accuracy (%)", range=[0, 105])
    return _layout(fig, title)


def identification_heatmap(matrix: np.ndarray, layers: Sequence[str], argmax: np.ndarray, *, title: str = "") -> go.Figure:
    """Layer x layer similarity of two networks with each row's argmax marked (green: the same layer, red: another)."""
    fig = heatmap_figure(matrix, layers, layers, title=title)
    layers = list(layers)
    ok = np.asarray(argmax) == np.arange(len(layers))
    fig.add_trace(go.Scatter(x=[layers[m] for m in argmax], y=layers, mode="markers", name="row argmax",
                             marker=dict(symbol="x", size=14, color=["limegreen" if o else "red" for o in ok],
                                         line=dict(width=1, color="black"))))
    fig.update_xaxes(title="layer of network b")
    fig.update_yaxes(title="layer of network a")
    return fig


def sanity_bar_figure(table: pd.DataFrame, *, title: str = "Layer identification accuracy") -> go.Figure:
    """Our accuracy per index (``SanityResult.table()``) with the paper's where it is a single number."""
    paper = pd.to_numeric(table["paper_pct"], errors="coerce")
    fig = go.Figure([go.Bar(x=table["index"], y=table["ours_pct"], name="ours"),
                     go.Bar(x=table["index"], y=paper, name="CKA paper (Table 2)")])
    fig.update_yaxes(title="accuracy (%)", range=[0, 105])
    return _layout(fig, title)
