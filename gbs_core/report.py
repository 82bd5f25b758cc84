"""The lab-meeting report: one self-contained HTML page (optionally a PDF of it) of a workspace's results.

A report holds, for the models of one workspace on one data set: the settings (data, N, seed, models with their
weights fingerprint and accuracy, layers, k, thresholds), the versions of the project and of its main libraries, the
date, and a section per analysis: modularity over depth with the flagged layers, layer x layer similarity heatmaps,
triangle motifs, sample graphs of chosen layers, and the pruning and sanity-check results that were given (the
callers pass what the disk cache already holds; the report never starts an experiment). The analyses go through the
same :mod:`gbs_core.analysis` functions and disk cache as the dashboard, so a report of what was just explored is
mostly cache reads. Figures are :mod:`gbs_core.figures`' (the app's look), drawn by plotly.js inlined once; the page
references nothing off the machine and opens offline. Every user string (model, layer, class and data names) is
HTML-escaped.
"""

from __future__ import annotations

import html
import importlib.metadata
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gbs_core import figures
from gbs_core.analysis import (
    FeatureSet,
    layer_graph_layout,
    layer_knn_graph,
    layer_similarity,
    modularity_by_layer,
    modularity_table,
    motifs_by_layer,
)
from gbs_core.cache import DiskCache
from gbs_core.export import figure_div, html_document
from gbs_core.metrics.modularity import PAPER_PRUNE_THRESHOLD

__all__ = ["SECTIONS", "ReportModel", "ReportSettings", "report_html", "graph_layers", "library_versions", "accuracy_on"]

SECTIONS = {
    "modularity": "Modularity over depth",
    "similarity": "Layer similarity",
    "motifs": "Triangle motifs",
    "graphs": "Sample graphs",
    "pruning": "Pruning",
    "sanity": "Layer identification (sanity check)",
}
_LIBRARIES = ("gbs-explorer", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "networkx", "umap-learn",
              "plotly", "streamlit", "timm")
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ReportSettings:
    """What the report was made with, as the workspace sets it.

    ``data`` names the data in words; ``graph_layers`` are the layers whose sample graphs are drawn (empty: the first,
    middle and last layer of each model); ``sections`` are keys of :data:`SECTIONS`."""

    data: str
    n_samples: int
    seed: int = 0
    k: int = 3
    motif_k: int = 5
    n_batches: int = 1
    threshold: float = PAPER_PRUNE_THRESHOLD
    pool: bool = False
    metrics: tuple[str, ...] = ("linear_cka", "gbs_dense")
    graph_layers: tuple[str, ...] = ()
    max_nodes: int = 500
    sections: tuple[str, ...] = tuple(SECTIONS)

    def __post_init__(self):
        bad = [s for s in self.sections if s not in SECTIONS]
        if bad:
            raise ValueError(f"unknown report section(s) {bad}; choose from {', '.join(SECTIONS)}")
        if self.n_samples < 1 or self.k < 1 or self.motif_k < 1 or self.n_batches < 1 or self.max_nodes < 1:
            raise ValueError("N, k, motif k, batches and the node count of the graphs must be at least 1")


@dataclass(frozen=True)
class ReportModel:
    """One model of the report: its features and what the report says about it."""

    fs: FeatureSet
    accuracy: float | None = None
    accuracy_where: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def library_versions() -> dict[str, str]:
    """Installed versions of the project and its main libraries (``"not installed"`` for an absent one)."""
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def graph_layers(layers: Sequence[str], chosen: Sequence[str] = ()) -> list[str]:
    """The layers whose graphs are drawn: the ``chosen`` ones this model has (in depth order), else the first,
    middle and last."""
    layers = list(layers)
    picked = [name for name in layers if name in set(chosen)]
    if picked:
        return picked
    return list(dict.fromkeys([layers[0], layers[len(layers) // 2], layers[-1]])) if layers else []


def _e(text) -> str:
    return html.escape(str(text))


def _table(df: pd.DataFrame, digits: int = 3) -> str:
    """A small table as escaped HTML."""
    return df.to_html(index=False, escape=True, border=0, na_rep="",
                      float_format=lambda v: f"{v:.{digits}f}")


class _Page:
    """The report's body as it is built: sections, figures (numbered div ids) and the index."""

    def __init__(self, subtitle: str):
        self.parts: list[str] = []
        self.index: list[tuple[str, str]] = []
        self.subtitle = subtitle
        self.n_figures = 0

    def section(self, key: str, title: str) -> None:
        self.index.append((key, title))
        self.parts.append(f'<h2 id="{key}">{_e(title)}</h2>')

    def text(self, words: str, css: str = "") -> None:
        self.parts.append(f'<p class="{css}">{_e(words)}</p>' if css else f"<p>{_e(words)}</p>")

    def heading(self, words: str) -> None:
        self.parts.append(f"<h3>{_e(words)}</h3>")

    def figure(self, fig: go.Figure) -> None:
        self.n_figures += 1
        figures.stamp(fig, self.subtitle)
        self.parts.append(f'<div class="figure">{figure_div(fig, div_id=f"figure-{self.n_figures}")}</div>')

    def table(self, df: pd.DataFrame, digits: int = 3) -> None:
        self.parts.append(_table(df, digits))


def _header(models: Sequence[ReportModel], settings: ReportSettings, page: _Page, title: str) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    versions = library_versions()
    page.parts.append(f"<h1>{_e(title)}</h1>")
    page.text(f"{settings.data} · N = {settings.n_samples} · seed {settings.seed} · made {now} with GBS Explorer "
              f"{versions.get('gbs-explorer', '?')}", "meta")
    page.section("settings", "Settings")
    rows = [("data", settings.data), ("samples (N)", settings.n_samples), ("subsample seed", settings.seed),
            ("k of the modularity graph", settings.k), ("k of the motif graph", settings.motif_k),
            ("modularity batches", settings.n_batches), ("dQ threshold (prunable)", settings.threshold),
            ("conv maps", "average pooled" if settings.pool else "flattened"),
            ("similarity measures", ", ".join(figures.metric_title(m) for m in settings.metrics))]
    page.table(pd.DataFrame(rows, columns=["setting", "value"]).astype(str))
    page.heading("Models")
    page.table(pd.DataFrame([{
        "model": m.fs.name,
        "weights (fingerprint)": m.fs.model_id[:16],
        "accuracy": "n/a" if m.accuracy is None else f"{100 * m.accuracy:.1f}%",
        "measured on": m.accuracy_where,
        "layers": f"{len(m.fs.layers)}: {', '.join(m.fs.layers)}",
        "notes": " ".join(m.notes),
    } for m in models]))
    page.heading("Versions")
    page.table(pd.DataFrame(list(versions.items()), columns=["library", "version"]))


def report_html(
    models: Sequence[ReportModel],
    settings: ReportSettings,
    *,
    cache: DiskCache | None = None,
    pruning: Sequence = (),
    sanity=None,
    title: str = "GBS Explorer report",
    progress: Progress | None = None,
) -> str:
    """The report of ``models`` (at least one) as one self-contained HTML page.

    ``pruning`` holds :class:`~gbs_core.experiments.pruning.PruningResult` and ``sanity`` a
    :class:`~gbs_core.experiments.sanity.SanityResult` (or None); their sections say so when there is nothing.
    ``progress(done, total, step)`` is called before each step and once at the end.
    """
    if not models:
        raise ValueError("a report needs at least one model")
    s = settings
    fs_list = [m.fs for m in models]
    names = figures.settings_text(data=s.data, n=s.n_samples, seed=s.seed, k=s.k)
    page = _Page(names)
    steps = [(key, fs) for key in s.sections if key in ("modularity", "motifs", "similarity", "graphs")
             for fs in fs_list] + [(key, None) for key in s.sections if key in ("pruning", "sanity")]
    done = 0

    def step(message: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done, len(steps), message)
        done += 1

    _header(models, s, page, title)
    tables = {}
    for key in s.sections:
        page.section(key, SECTIONS[key])
        if key == "modularity":
            for fs in fs_list:
                step(f"modularity of {fs.name}")
                curve = modularity_by_layer(fs, k=s.k, n_batches=s.n_batches, seed=s.seed, cache=cache)
                tables[fs.name] = modularity_table(curve, threshold=s.threshold).assign(model=fs.name)
            page.text(f"Q of each layer's k = {s.k} kNN graph with the true classes as communities; shaded layers "
                      f"gain less than {s.threshold} over the previous one (plateau) or lose Q (degradation): "
                      "candidates for pruning.")
            page.figure(figures.modularity_chart(list(tables.values()), normalized=len(fs_list) > 1,
                                                 spread=s.n_batches > 1))
            for fs in fs_list:
                t = tables[fs.name]
                flagged = t[t["prunable"]]
                page.heading(f"{fs.name}: {len(flagged)} of {len(t)} layers flagged")
                page.table(t[["depth", "layer", "q", "dq", "kind"]].rename(columns={"q": "Q", "dq": "dQ"}))
        elif key == "similarity":
            for fs in fs_list:
                step(f"similarity of {fs.name}")
                for metric in s.metrics:
                    extra = {"k": s.motif_k} if metric == "gbs_knn" else {}
                    M = layer_similarity(fs, metric=metric, cache=cache, **extra)
                    page.figure(figures.similarity_heatmap(M, fs.layers, fs.layers,
                                                           title=f"{figures.metric_title(metric)}: {fs.name}",
                                                           row_title="layer", col_title="layer"))
        elif key == "motifs":
            motif_tables = []
            for fs in fs_list:
                step(f"motifs of {fs.name}")
                motif_tables.append(motifs_by_layer(fs, k=s.motif_k, cache=cache).assign(model=fs.name))
            if "modularity" not in s.sections:
                for fs in fs_list:
                    curve = modularity_by_layer(fs, k=s.k, n_batches=s.n_batches, seed=s.seed, cache=cache)
                    tables[fs.name] = modularity_table(curve, threshold=s.threshold).assign(model=fs.name)
            page.text(f"Triangles of the k = {s.motif_k} kNN graph: the fraction whose three samples share a class "
                      "beside modularity Q.")
            page.figure(figures.motif_vs_modularity(motif_tables, [tables[fs.name] for fs in fs_list],
                                                    normalized=len(fs_list) > 1))
            for fs, t in zip(fs_list, motif_tables, strict=True):
                page.figure(figures.motif_bars(t, title=f"Triangle motifs: {fs.name}"))
        elif key == "graphs":
            for fs in fs_list:
                step(f"sample graphs of {fs.name}")
                for layer in graph_layers(fs.layers, s.graph_layers):
                    nodes, xy = layer_graph_layout(fs, layer, k=s.k, max_nodes=s.max_nodes, seed=s.seed, cache=cache)
                    drawn = "" if len(nodes) == fs.n_samples else f", {len(nodes)} of {fs.n_samples} samples drawn"
                    page.figure(figures.sample_graph(layer_knn_graph(fs, layer, k=s.k, cache=cache), nodes, xy,
                                                     fs.labels, fs.class_names,
                                                     title=f"{fs.name} · {layer} (k = {s.k}{drawn})"))
        elif key == "pruning":
            step("pruning")
            if not pruning:
                page.text("No pruning result of these models: run one on the Pruning page (the dashboard's report "
                          "then includes it), or `python -m gbs_core prune MODEL --out DIR` and give `report "
                          "--results DIR`.", "note")
            for result in pruning:
                t = result.table()
                page.heading(f"{result.model_label}: {len(result.plan.to_remove)} unit(s) removed")
                page.figure(figures.pruning_figure(t, title=f"Pruning: {result.model_label}"))
                page.table(t)
        elif key == "sanity":
            step("sanity check")
            if sanity is None:
                page.text("No sanity-check result: run it on the Sanity check page (the dashboard's report then "
                          "includes it), or `python -m gbs_core sanity-check --out DIR` and give `report --results "
                          "DIR`.", "note")
            else:
                t = sanity.table()
                page.text(f"Models: {', '.join(sanity.models)}; a layer of one model is identified when its most "
                          "similar layer of another model is the same layer.")
                page.figure(figures.sanity_bar_figure(t))
                page.table(t)
    if progress is not None:
        progress(len(steps), len(steps), "report written")
    nav = "".join(f'<li><a href="#{k}">{_e(t)}</a></li>' for k, t in page.index)
    body = page.parts[:2] + [f"<nav><ol>{nav}</ol></nav>"] + page.parts[2:]
    return html_document(title, "\n".join(body))


def accuracy_on(fs: FeatureSet) -> float | None:
    """Accuracy of the model's predictions on the report's samples (None without predictions)."""
    return None if fs.predictions is None else float(np.mean(fs.predictions == fs.labels))
