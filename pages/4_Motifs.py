"""Motifs: the three kinds of closed triangles in each layer's kNN graph, per model, and the same-class fraction."""

import pandas as pd
import streamlit as st

from dashboard import cached, errors, widgets, workspace
from gbs_core import figures

st.set_page_config(page_title="Motifs · GBS Explorer", page_icon=workspace.FAVICON, layout="wide")
ws = workspace.show()
st.title("Triangle motifs")
st.caption(
    f"In each layer's kNN graph (k = {ws.k_motifs}, unweighted) every closed triangle of three samples is "
    "counted once and typed by their classes: all three in one class, two sharing a class, or all different. "
    "A layer that separates the classes has mostly same-class triangles."
)

with errors.guard("count the motifs"):
    fs_list = cached.feature_sets(ws)
    cached.check_layers(fs_list)
    motif_tables = [cached.motifs(fs, k=ws.k_motifs) for fs in fs_list]
    mod_tables = [cached.modularity_table(fs, k=ws.k_modularity, threshold=0.03) for fs in fs_list]

for col, fs, table in zip(st.columns(min(len(fs_list), 2)) * len(fs_list), fs_list, motif_tables, strict=False):
    with col:
        widgets.chart(
            figures.motif_bars(table, title=f"{fs.name}: triangle types per layer"),
            table,
            name=f"motifs_{fs.name}_k{ws.k_motifs}",
            key=f"motifs_{fs.model_id}",
            image_format=ws.image_format,
        )

normalized = len({len(t) for t in motif_tables}) > 1
fig = figures.motif_vs_modularity(motif_tables, mod_tables, normalized=normalized)
both = pd.concat([m.merge(q[["layer", "q"]], on="layer") for m, q in zip(motif_tables, mod_tables, strict=True)])
widgets.chart(fig, both, name="same_class_fraction_vs_modularity", key="motifs_vs_q", image_format=ws.image_format)
