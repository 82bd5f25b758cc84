"""Small reusable renderers shared by the pages: a chart with its downloads, a graph with its download."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import graph_view
from gbs_core import figures
from gbs_core.figures import plotly_config

__all__ = ["chart", "csv_download", "graph", "layer_picker", "model_picker"]

# Streamlit serves the app's static/ folder (server.enableStaticServing) at app/static/, relative to the page's URL
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
STATIC_URL = "app/static"
FIGURE_SETTINGS = "figure_settings"  # session key: the workspace's settings, for each chart's subtitle and file name


def csv_download(table: pd.DataFrame, *, name: str, key: str, label: str = "Download CSV") -> None:
    st.download_button(
        label,
        table.to_csv(index=False).encode(),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=key,
        on_click="ignore",
        icon=":material/download:",
    )


def chart(fig: go.Figure, table: pd.DataFrame, *, name: str, key: str, image_format: str = "png") -> None:
    """A plotly chart (toolbar camera: PNG or SVG) and a button that downloads its numbers as CSV.

    The chart keeps the project's own look (``theme=None``: the same figure as the command line's and the report's),
    carries the workspace's settings as its subtitle, and its image and CSV file names record them."""
    settings = st.session_state.get(FIGURE_SETTINGS, {})
    figures.stamp(fig, figures.settings_text(**settings))
    name = figures.file_stem(name, **settings)
    st.plotly_chart(fig, config=plotly_config(name, image_format), key=f"{key}_chart", theme=None)
    csv_download(table, name=name, key=f"{key}_csv")


def _static_vis_network() -> bool:
    """Whether the browser can load vis-network from the app's static folder (served, and the files present)."""
    return bool(st.get_option("server.enableStaticServing")) and all(
        (STATIC_DIR / name).is_file() for name in graph_view.VIS_NETWORK_FILES
    )


def graph(page: str, *, name: str, key: str, height: int = 640) -> None:
    """The graph's standalone HTML in an iframe, and a button that downloads that same file.

    The iframe loads vis-network from the app's static folder when it is served (the browser caches it, so moving
    the layer slider sends about 180 KB, not 850 KB); the download keeps it inline, and is encoded only when clicked.
    """
    st.iframe(graph_view.link_vis_network(page, STATIC_URL) if _static_vis_network() else page, height=height)
    st.download_button(
        "Download graph (HTML)",
        lambda: page.encode(),
        file_name=f"{name}.html",
        mime="text/html",
        key=f"{key}_html",
        on_click="ignore",
        icon=":material/download:",
    )


def layer_picker(fs_list: list, *, key: str, default: str = "last"):
    """Pick a model (when there are several) and one of its layers with a slider; returns ``(feature_set, layer)``.

    The choice is kept per model for the session, so walking back to a model returns to the layer last shown.
    """
    names = [fs.name for fs in fs_list]
    name = names[0]
    if len(names) > 1:
        name = st.selectbox("Model", names, key=f"{key}_model", persist_state="session", bind="query-params")
    fs = fs_list[names.index(name)]
    layers = fs.layers
    start = layers[-1] if default == "last" else layers[0]
    if len(layers) == 1:
        st.caption(f"Layer: {layers[0]}")
        return fs, layers[0]
    layer = st.select_slider(
        "Layer (depth order)", layers, value=start, key=f"{key}_layer_{fs.model_id}", persist_state="session",
        bind="query-params",
    )
    return fs, layer


def model_picker(ws, *, key: str, verb: str, container=st):
    """A selectbox over the sidebar's models that have weights (saved activations have none) and the chosen model's
    spec; without one, a warning saying they cannot be ``verb`` and the page stops."""
    models = [m for m in ws.models if m.spec is not None]
    if not models:
        st.warning(f"Pick a model in the sidebar (saved activations cannot be {verb}).")
        st.stop()
    label = container.selectbox("Model", [m.label for m in models], key=key, bind="query-params")
    return next(m.spec for m in models if m.label == label)
