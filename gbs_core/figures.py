"""Plotly figures of GBS Explorer: the dashboard's charts, the command line's figures and the report share them.

Plain plotly (no Streamlit): each function takes result tables or arrays and returns a ``plotly.graph_objects.Figure``;
it computes nothing beyond layout. One look everywhere: the ``"gbs"`` template (registered here), titles in words
(:func:`metric_title`), the settings in a subtitle (:func:`stamp`), the legend in its own band below the plot (so a
static export never clips it or lays it over an axis title), and every layer x layer heatmap with the first layer at
the top left, as in the CKA paper. Class colours are shared with the graph view so a class has the same colour in the
scatter and in the graph. ``plotly_config`` sets the toolbar's camera button to export PNG or SVG under a file name
that records the settings (:func:`file_stem`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import scipy.sparse as sp
from plotly.colors import qualitative

__all__ = [
    "class_colors",
    "model_colors",
    "plotly_config",
    "embedding_scatter",
    "modularity_chart",
    "similarity_heatmap",
    "motif_bars",
    "motif_vs_modularity",
    "pruning_figure",
    "identification_heatmap",
    "sanity_bar_figure",
    "dynamics_heatmap",
    "dynamics_curves",
    "adversarial_curves",
    "layer_difference_heatmap",
    "stitching_heatmap",
    "stitching_scatter",
    "transfer_figure",
    "sample_graph",
    "metric_title",
    "settings_text",
    "file_stem",
    "stamp",
    "MOTIF_LABELS",
    "TEMPLATE",
]

MOTIF_LABELS = {
    "same_class_fraction": "all three in one class",
    "two_classes_fraction": "two share a class",
    "all_different_fraction": "all different",
}
_MOTIF_COLORS = {
    "same_class_fraction": "#2CA02C",
    "two_classes_fraction": "#FF7F0E",
    "all_different_fraction": "#D62728",
}
_METRIC_TITLES = {
    "linear_cka": "CKA (linear)",
    "debiased_linear_cka": "CKA (debiased linear)",
    "rbf_cka": "CKA (RBF)",
    "minibatch_cka": "CKA (minibatch)",
    "gbs_dense": "GBS (dense graph)",
    "gbs_knn": "GBS (kNN graph)",
    "mean_cca": "mean CCA",
    "mean_squared_cca": "mean squared CCA",
    "svcca": "SVCCA",
    "pwcca": "PWCCA",
    "linear_regression": "linear regression fit",
}
TEMPLATE = "gbs"
pio.templates[TEMPLATE] = go.layout.Template(pio.templates["plotly_white"])
pio.templates[TEMPLATE].layout.update(
    font={"family": "Helvetica, Arial, sans-serif", "size": 13, "color": "#262730"},
    title={"font": {"size": 17}, "x": 0, "xanchor": "left", "xref": "container", "yref": "paper", "automargin": True,
           "pad": {"l": 12, "b": 18}},
    colorway=qualitative.Plotly,
)
_KIND_COLORS = {"plateau": "rgba(255, 193, 7, 0.18)", "degradation": "rgba(220, 53, 69, 0.18)"}


def class_colors(n_classes: int) -> list[str]:
    """One colour per class: D3's ten for up to 10 classes, then Light24 and Alphabet, cycled beyond."""
    palette = qualitative.D3 if n_classes <= 10 else qualitative.Light24 + qualitative.Alphabet
    return [palette[i % len(palette)] for i in range(n_classes)]


def model_colors(n_models: int) -> list[str]:
    palette = qualitative.Plotly
    return [palette[i % len(palette)] for i in range(n_models)]


def plotly_config(name: str, image_format: str = "png") -> dict:
    """Toolbar settings: the camera button downloads ``<name>.<png|svg>`` (``name`` made safe by :func:`file_stem`)."""
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": image_format, "filename": file_stem(name), "scale": 2},
    }


def metric_title(metric: str) -> str:
    """A similarity metric's name in words (``"gbs_dense"`` -> ``"GBS (dense graph)"``); unknown names as given."""
    return _METRIC_TITLES.get(metric, metric.replace("_", " "))


def settings_text(**settings) -> str:
    """The settings behind a figure as one line, ``"digits-noise · N = 500 · seed 0 · k = 3"``, in the order given;
    None and empty values are left out. Keys ``n``, ``k``, ``seed`` read as N =, k =, seed; others as ``key value``."""
    parts = []
    for key, value in settings.items():
        if value is None or value == "" or value == ():
            continue
        if key in ("data", "model", "models"):
            parts.append(", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value))
        elif key == "n":
            parts.append(f"N = {value}")
        elif key == "seed":
            parts.append(f"seed {value}")
        else:
            parts.append(f"{key.replace('_', ' ')} = {value}")
    return " · ".join(parts)


def file_stem(name: str, **settings) -> str:
    """A file name (no suffix) that records the settings: ``file_stem("modularity", model="resnet56", data=
    "digits-noise", n=500, k=3)`` -> ``"modularity_resnet56_digits-noise_n500_k3"``; only ``[A-Za-z0-9_.-]``."""
    parts = [name]
    for key, value in settings.items():
        if value is None or value == "" or value == ():
            continue
        if isinstance(value, list | tuple):
            value = "-".join(map(str, value))
        parts.append(str(value) if key in ("data", "model", "models") else f"{key}{value}")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(parts)).strip("-_.")
    return stem[:180] or "figure"


def stamp(fig: go.Figure, subtitle: str) -> go.Figure:
    """Put ``subtitle`` (e.g. :func:`settings_text`) under the figure's title, so an exported image says what it
    shows."""
    if subtitle:
        fig.update_layout(title_subtitle_text=html.escape(subtitle, quote=False), title_subtitle_font_size=12)
    return fig


_LEGEND_CHARS = 38  # a legend entry longer than this wraps: one entry must fit a half-width chart (about 450 px)
_TITLE_CHARS = 46


def _wrap(text: str, width: int) -> str:
    """``text`` broken with ``<br>`` at spaces so that no line is longer than ``width`` (a longer word stays whole)."""
    if len(text) <= width or "<br>" in text:
        return text
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "<br>".join([*lines, line])


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    """The common look: template, title at the top left, legend in a band of its own at the bottom of the figure
    (``yref="container"``: plotly shrinks the plot to make room, so the legend never covers an axis title and an
    export never cuts it off)."""
    for trace in fig.data:  # plotly reads tags in text: names from users are escaped, then wrapped
        if trace.name and trace.showlegend is not False:
            trace.name = _wrap(html.escape(str(trace.name), quote=False), _LEGEND_CHARS)
    fig.update_layout(
        template=TEMPLATE,
        title_text=_wrap(html.escape(title, quote=False), _TITLE_CHARS),
        height=height,
        margin={"l": 10, "r": 10, "t": 70, "b": 10, "autoexpand": True},
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0, "xanchor": "left",
                "entrywidthmode": "pixels"},
    )
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def embedding_scatter(
    xy: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    predictions: np.ndarray | None = None,
    *,
    title: str = "",
    method: str = "UMAP",
) -> go.Figure:
    """One trace per class; hover shows the sample index, true and predicted class."""
    colors = class_colors(len(class_names))
    fig = go.Figure()
    idx = np.arange(len(labels))
    for c, name in enumerate(class_names):
        m = labels == c
        if not m.any():
            continue
        pred = (
            [str(class_names[p]) if 0 <= p < len(class_names) else str(p) for p in predictions[m]]
            if predictions is not None
            else ["n/a"] * int(m.sum())
        )
        fig.add_trace(
            go.Scattergl(
                x=xy[m, 0],
                y=xy[m, 1],
                mode="markers",
                name=str(name),
                marker={"size": 6, "color": colors[c]},
                customdata=np.column_stack([idx[m], [str(name)] * int(m.sum()), pred]),
                hovertemplate="sample %{customdata[0]}<br>true: %{customdata[1]}<br>predicted: %{customdata[2]}"
                "<extra></extra>",
            )
        )
    fig.update_xaxes(title=f"{method} 1", showticklabels=False)
    fig.update_yaxes(title=f"{method} 2", showticklabels=False, scaleanchor="x")
    return _layout(fig, title, 520)


def modularity_chart(tables: Sequence[pd.DataFrame], *, normalized: bool, spread: bool = False) -> go.Figure:
    """Q over depth, one line per model (``model`` column); flagged layers shaded by kind (plateau / degradation).

    Each table is ``cached.modularity_table``'s: depth, normalized_depth, layer, q, q_std, dq, prunable, kind.
    """
    x_col = "normalized_depth" if normalized else "depth"
    fig = go.Figure()
    colors = model_colors(len(tables))
    for table, color in zip(tables, colors, strict=True):
        x = table[x_col].to_numpy()
        step = (x[1] - x[0]) if len(x) > 1 else 1.0
        for row in table[table["prunable"]].itertuples():
            x1 = getattr(row, x_col)
            fig.add_vrect(x0=x1 - step, x1=x1, fillcolor=_KIND_COLORS[row.kind], line_width=0, layer="below")
        name = str(table["model"].iloc[0])
        if spread and (table["q_std"] > 0).any():
            band_x = np.concatenate([x, x[::-1]])
            band_y = np.concatenate([table["q"] + table["q_std"], (table["q"] - table["q_std"])[::-1]])
            fig.add_trace(
                go.Scatter(
                    x=band_x,
                    y=band_y,
                    fill="toself",
                    fillcolor=color,
                    opacity=0.2,
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    name=f"{name} ± std",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=table["q"],
                mode="lines+markers",
                name=name,
                line={"color": color},
                customdata=np.column_stack([table["layer"], table["dq"].fillna(0), table["kind"]]),
                hovertemplate="%{customdata[0]}<br>Q = %{y:.3f}<br>dQ = %{customdata[1]:.3f} %{customdata[2]}"
                "<extra></extra>",
            )
        )
    for kind, fill in _KIND_COLORS.items():  # legend entries for the shading
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name=kind,
                showlegend=True,
                marker={"size": 12, "symbol": "square", "color": fill.replace("0.18", "0.6")},
            )
        )
    fig.update_xaxes(title="normalised depth" if normalized else "layer depth")
    fig.update_yaxes(title="modularity Q")
    return _layout(fig, "Modularity of each layer's kNN graph (classes as communities)")


def similarity_heatmap(
    matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], *, title: str, row_title: str, col_title: str
) -> go.Figure:
    """Layer x layer heatmap in depth order, the first layer at the top left (rows down, columns right, as in the CKA
    paper), values on hover."""
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=list(range(len(cols))),
            y=list(range(len(rows))),
            colorscale="Viridis",
            zmin=0,
            zmax=max(1.0, float(np.nanmax(matrix))) if np.isfinite(matrix).any() else 1.0,
            customdata=np.array([[f"{r} | {c}" for c in cols] for r in rows]),
            hovertemplate="%{customdata}<br>similarity = %{z:.3f}<extra></extra>",
            colorbar={"thickness": 12},
        )
    )
    tick = max(1, len(cols) // 12)
    fig.update_xaxes(
        title=col_title, tickvals=list(range(0, len(cols), tick)), ticktext=list(cols)[::tick], tickangle=-45
    )
    tick = max(1, len(rows) // 12)
    fig.update_yaxes(title=row_title, tickvals=list(range(0, len(rows), tick)), ticktext=list(rows)[::tick],
                     autorange="reversed")
    return _layout(fig, title, 520)


def motif_bars(table: pd.DataFrame, *, title: str) -> go.Figure:
    """Stacked fractions of the three triangle types per layer (``motifs_by_layer`` table)."""
    fig = go.Figure()
    for col, label in MOTIF_LABELS.items():
        fig.add_trace(
            go.Bar(
                x=table["layer"],
                y=table[col],
                name=label,
                marker_color=_MOTIF_COLORS[col],
                hovertemplate="%{x}<br>" + label + ": %{y:.3f}<extra></extra>",
            )
        )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="layer (depth order)", tickangle=-45)
    fig.update_yaxes(title="fraction of triangles", range=[0, 1])
    return _layout(fig, title)


def motif_vs_modularity(
    motif_tables: Sequence[pd.DataFrame], mod_tables: Sequence[pd.DataFrame], *, normalized: bool
) -> go.Figure:
    """Per model: the same-class triangle fraction (solid) and modularity Q (dotted) over depth."""
    x_col = "normalized_depth" if normalized else "depth"
    fig = go.Figure()
    for motifs, mod, color in zip(motif_tables, mod_tables, model_colors(len(motif_tables)), strict=True):
        name = str(motifs["model"].iloc[0])
        fig.add_trace(
            go.Scatter(
                x=motifs[x_col],
                y=motifs["same_class_fraction"],
                mode="lines+markers",
                name=f"{name}: same-class triangles",
                line={"color": color},
                customdata=motifs["layer"],
                hovertemplate="%{customdata}: %{y:.3f}<extra></extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=mod[x_col],
                y=mod["q"],
                mode="lines",
                name=f"{name}: modularity Q",
                line={"color": color, "dash": "dot"},
                customdata=mod["layer"],
                hovertemplate="%{customdata}: Q = %{y:.3f}<extra></extra>",
            )
        )
    fig.update_xaxes(title="normalised depth" if normalized else "layer depth")
    fig.update_yaxes(title="fraction / Q")
    return _layout(fig, "Same-class triangle fraction beside modularity")


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


def _named_heatmap(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], *, title: str = "") -> go.Figure:
    """Heatmap with layer names on both axes, first row at the top (the sanity check's reading order)."""
    fig = go.Figure(go.Heatmap(z=matrix, x=list(cols), y=list(rows), colorscale="Viridis"))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, 520)


def identification_heatmap(matrix: np.ndarray, layers: Sequence[str], argmax: np.ndarray, *, title: str = "") -> go.Figure:
    """Layer x layer similarity of two networks with each row's argmax marked (green: the same layer, red: another)."""
    fig = _named_heatmap(matrix, layers, layers, title=title)
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


def dynamics_heatmap(matrix: np.ndarray, checkpoints: Sequence[str], accuracy: Sequence[float], layers: Sequence[str],
                     *, title: str, metric_label: str) -> go.Figure:
    """A per-layer metric over training: one row per checkpoint (first epoch at the top, its accuracy in the row
    label), one column per layer in depth order."""
    rows = [f"{c} · {100 * a:.0f}%" for c, a in zip(checkpoints, accuracy, strict=True)]
    fig = go.Figure(go.Heatmap(
        z=matrix, x=list(layers), y=rows, colorscale="Viridis", colorbar={"thickness": 12, "title": metric_label},
        hovertemplate="%{y}<br>%{x}<br>" + metric_label + " = %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title="checkpoint · test accuracy")
    fig.update_xaxes(title="layer (depth order)", tickangle=-45)
    return _layout(fig, title, 460)


def dynamics_curves(table: pd.DataFrame, checkpoints: Sequence[str], *, metric: str = "q",
                    metric_label: str = "modularity Q") -> go.Figure:
    """The curves of the chosen checkpoints overlaid (``DynamicsResult.table()``), later epochs darker."""
    fig = go.Figure()
    shades = np.linspace(0.25, 1.0, len(checkpoints))
    for shade, label in zip(shades, checkpoints, strict=True):
        rows = table[table["checkpoint"] == label]
        acc = float(rows["accuracy"].iloc[0]) if len(rows) else float("nan")
        fig.add_trace(go.Scatter(x=rows["layer"], y=rows[metric], mode="lines+markers",
                                 name=f"{label} ({100 * acc:.0f}%)",
                                 line={"color": f"rgba(31, 119, 180, {shade:.2f})"}))
    fig.update_xaxes(title="layer (depth order)", tickangle=-45)
    fig.update_yaxes(title=metric_label)
    return _layout(fig, f"{metric_label} of each layer over training")


def adversarial_curves(table: pd.DataFrame, *, title: str = "Modularity of clean and attacked inputs") -> go.Figure:
    """Q over depth for the clean inputs (black) and each attack (``AdversarialResult.curves_table()``), the
    accuracy on each input set in its legend entry."""
    fig = go.Figure()
    attacks = list(dict.fromkeys(table["attack"]))
    colors = model_colors(len(attacks))
    for attack, color in zip(attacks, colors, strict=True):
        rows = table[table["attack"] == attack]
        clean = attack == "clean"
        fig.add_trace(go.Scatter(
            x=rows["layer"], y=rows["q"], mode="lines+markers",
            name=f"{attack} (accuracy {100 * float(rows['accuracy'].iloc[0]):.1f}%)",
            line={"color": "black" if clean else color, "width": 3 if clean else 2, "dash": None if clean else "dot"}))
    fig.update_xaxes(title="layer (depth order)", tickangle=-45)
    fig.update_yaxes(title="modularity Q")
    return _layout(fig, title)


def layer_difference_heatmap(matrix: np.ndarray, layers: Sequence[str], *, title: str) -> go.Figure:
    """|Q_i - Q_j| between layers (``modularity_difference``), in depth order like the CKA heatmap beside it."""
    fig = similarity_heatmap(matrix, layers, layers, title=title, row_title="layer", col_title="layer")
    fig.update_traces(zmax=float(np.nanmax(matrix)) if np.isfinite(matrix).any() and np.nanmax(matrix) > 0 else 1.0,
                      colorscale="Magma", hovertemplate="%{customdata}<br>|Q_i - Q_j| = %{z:.3f}<extra></extra>")
    return fig


def stitching_heatmap(accuracy: np.ndarray, layers_a: Sequence[str], layers_b: Sequence[str], *, title: str,
                      model_a: str, model_b: str) -> go.Figure:
    """Stitched test accuracy over (layer of A: rows, layer of B: columns); pairs not run are blank."""
    fig = go.Figure(go.Heatmap(
        z=100 * np.asarray(accuracy, dtype=np.float64), x=list(layers_b), y=list(layers_a), colorscale="Viridis",
        zmin=0, zmax=100, colorbar={"thickness": 12, "title": "acc. %"},
        hovertemplate="A %{y} -> B %{x}<br>stitched accuracy %{z:.1f}%<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title=f"layer of A ({model_a})")
    fig.update_xaxes(title=f"layer of B ({model_b})", tickangle=-45)
    return _layout(fig, title, 480)


def stitching_scatter(pairs: pd.DataFrame, index: str, *, index_label: str, rho: float, title: str) -> go.Figure:
    """Stitched accuracy against one index over the stitched pairs (``StitchResult.pairs_table()``)."""
    fig = go.Figure(go.Scatter(
        x=pairs[index], y=100 * pairs["stitched_accuracy"], mode="markers",
        text=[f"{a} -> {b}" for a, b in zip(pairs["layer_a"], pairs["layer_b"], strict=True)],
        marker={"size": 9, "color": pairs["depth_a"], "colorscale": "Viridis", "showscale": True,
                "colorbar": {"thickness": 12, "title": "depth of A"}},
        hovertemplate="%{text}<br>" + index_label + " %{x:.3f}<br>accuracy %{y:.1f}%<extra></extra>"))
    fig.update_xaxes(title=index_label)
    fig.update_yaxes(title="stitched accuracy (%)")
    return _layout(fig, f"{title} (Spearman rho = {rho:.2f})")


def transfer_figure(table: pd.DataFrame, *, title: str, score: str = "gbs_label",
                    score_label: str = "dense GBS to the label graph") -> go.Figure:
    """Each source model's training-free score (x) against its probe and fine-tuned accuracy on the target (y)
    (``TransferResult.table()``), named on hover."""
    fig = go.Figure()
    for truth, name, symbol in (("probe_accuracy", "linear probe", "circle"),
                                ("finetune_accuracy", "fine-tuned", "diamond")):
        if truth in table:
            fig.add_trace(go.Scatter(x=table[score], y=100 * table[truth], mode="markers", name=name,
                                     text=table["source"], marker={"size": 10, "symbol": symbol},
                                     hovertemplate="%{text}<br>score %{x:.3f}<br>accuracy %{y:.1f}%<extra></extra>"))
    fig.update_xaxes(title=score_label)
    fig.update_yaxes(title="accuracy on the target (%)")
    return _layout(fig, title)


def sample_graph(adjacency: sp.csr_array, nodes: np.ndarray, xy: np.ndarray, labels: np.ndarray,
                 class_names: Sequence[str], *, title: str = "") -> go.Figure:
    """A drawn sample graph as a plotly figure (the report's static view of the dashboard's pyvis graph): the edges
    among ``nodes`` as grey segments, the nodes at ``xy`` coloured by class (the graph view's colours). SVG traces, not WebGL, so it prints and exports
    anywhere."""
    A = sp.csr_array(adjacency)[nodes][:, nodes].tocoo()
    keep = A.row < A.col
    rows, cols = A.row[keep], A.col[keep]
    ex = np.column_stack([xy[rows, 0], xy[cols, 0], np.full(rows.size, np.nan)]).ravel()
    ey = np.column_stack([-xy[rows, 1], -xy[cols, 1], np.full(rows.size, np.nan)]).ravel()
    fig = go.Figure(go.Scatter(x=ex, y=ey, mode="lines", line={"color": "rgba(154, 160, 166, 0.5)", "width": 0.7},
                                 hoverinfo="skip", showlegend=False))
    colors = class_colors(len(class_names))
    node_labels = np.asarray(labels)[nodes]
    for c, name in enumerate(class_names):
        m = node_labels == c
        if m.any():
            fig.add_trace(go.Scatter(x=xy[m, 0], y=-xy[m, 1], mode="markers", name=str(name),
                                       marker={"size": 6, "color": colors[c], "line": {"width": 0.5, "color": "white"}},
                                       text=[f"sample {i}<br>{html.escape(str(name))}" for i in np.asarray(nodes)[m]],
                                       hovertemplate="%{text}<extra></extra>"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    return _layout(fig, title, 560)
