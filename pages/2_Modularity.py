"""Modularity: Q over depth for every selected model, plateaus and degradations shaded, prunable layers listed."""

import pandas as pd
import streamlit as st

from dashboard import cached, errors, widgets, workspace
from gbs_core import figures

st.set_page_config(page_title="Modularity · GBS Explorer", page_icon=workspace.FAVICON, layout="wide")
ws = workspace.show()
st.title("Modularity over depth")
st.caption(
    f"Q of each layer's kNN graph (k = {ws.k_modularity}) with the true classes as communities: 0 means the "
    "graph ignores the classes, values near 1 mean the classes are separate clusters. A layer whose gain "
    "dQ over the previous layer is below the threshold adds little: a plateau (dQ ≥ 0) or a degradation "
    f"(dQ < 0), shaded on the chart and listed below as candidates for pruning. {cached.KNN_SEARCH_NOTE}"
)

a, b = st.columns(2)
threshold = a.slider(
    "Threshold on dQ", 0.0, 0.2, 0.03, 0.005, format="%.3f", key="mod_threshold", bind="query-params", persist_state="session"
)
batches = b.number_input(
    "Disjoint batches (mean and spread)",
    1,
    10,
    1,
    key="mod_batches", bind="query-params",
    persist_state="session",
    help="Split the N samples into this many disjoint stratified batches and compute Q on each; "
    "the paper averages 5 batches of 500.",
)

with errors.guard("compute modularity"):
    fs_list = cached.feature_sets(ws)
    cached.check_layers(fs_list)
    tables = [
        cached.modularity_table(fs, k=ws.k_modularity, threshold=threshold, n_batches=batches, seed=ws.data.seed)
        for fs in fs_list
    ]
table = pd.concat(tables, ignore_index=True)
normalized = len({len(t) for t in tables}) > 1
fig = figures.modularity_chart(tables, normalized=normalized, spread=batches > 1)
widgets.chart(fig, table, name="modularity", key="mod", image_format=ws.image_format)
if normalized:
    st.caption("The models differ in depth: the x axis is the normalised depth (0 = first, 1 = last analysed layer).")

st.subheader("Prunable layers")
prunable = table.loc[table["prunable"], ["model", "depth", "layer", "q", "dq", "kind"]]
st.dataframe(
    prunable.rename(columns={"q": "Q", "dq": "dQ"}),
    hide_index=True,
    key="mod_table",
    column_config={
        "Q": st.column_config.NumberColumn(format="%.4f"),
        "dQ": st.column_config.NumberColumn(format="%+.4f"),
    },
)
st.caption(f"{len(prunable)} of {len(table)} layers flagged at dQ < {threshold:.3f}. The first layer is never flagged.")
widgets.csv_download(prunable, name="prunable_layers", key="mod_prunable_csv", label="Download prunable layers (CSV)")
