"""Similarity: layer x layer heatmaps of CKA and GBS, within one model or across two."""

import streamlit as st

from dashboard import cached, errors, widgets, workspace
from gbs_core import analysis, figures

st.set_page_config(page_title="Similarity · GBS Explorer", page_icon=workspace.FAVICON, layout="wide")
ws = workspace.show()
st.title("Layer similarity")
st.caption(
    "Each cell compares two layers on the same samples: 1 means the same representation up to the "
    "transforms the measure ignores. CKA compares the samples' Gram matrices; GBS compares each sample's row "
    "of the two layers' sample graphs. A bright diagonal block means a run of layers that change little."
)

with errors.guard("load the features"):
    fs_list = cached.feature_sets(ws)
    cached.check_layers(fs_list)
names = [fs.name for fs in fs_list]

c = st.columns(4)
row_name = c[0].selectbox("Rows: model", names, key="sim_a", bind="query-params", persist_state="session")
col_name = c[1].selectbox("Columns: model", names, key="sim_b", bind="query-params", persist_state="session")
cka = c[2].selectbox("CKA variant", list(cached.CKA_VARIANTS), key="sim_cka", bind="query-params", persist_state="session")
gbs = c[3].selectbox(
    "GBS graph",
    list(cached.GBS_VARIANTS),
    key="sim_gbs", bind="query-params",
    persist_state="session",
    help=f"dense: all cosine similarities; kNN: the k = {ws.k_motifs} graph (k for motifs).",
)
params = {}
if cka == "RBF":
    params["sigma_fraction"] = st.slider(
        "RBF sigma as a fraction of the median distance", 0.1, 2.0, 0.4, 0.1, key="sim_sigma", bind="query-params", persist_state="session"
    )
if cka == "minibatch":
    params["batch_size"] = st.number_input("Minibatch size (at most)", 4, 10_000, 128, key="sim_batch", bind="query-params",
                                           persist_state="session")
    with errors.guard("plan the minibatches"):
        count, size = analysis.minibatch_batches(fs_list[0].n_samples, int(params["batch_size"]))
    left_out = fs_list[0].n_samples - count * size
    st.caption(f"Minibatch CKA: {count} equal batches of {size} samples (unbiased HSIC averaged over batches, as in "
               f"Nguyen et al. 2021){f'; {left_out} samples left out so that the batches are equal' if left_out else ''}.")

fs_a, fs_b = fs_list[names.index(row_name)], fs_list[names.index(col_name)]
left, right = st.columns(2)
for col, label, (metric, kwargs) in (
    (left, f"CKA ({cka})", cached.cka_metric(cka, params)),
    (right, f"GBS ({gbs})", cached.gbs_metric(gbs, ws.k_motifs)),
):
    with col, errors.guard(f"compute {label}"):
        matrix = cached.similarity(fs_a, None if fs_b is fs_a else fs_b, metric=metric, **kwargs)
        title = f"{label}: {fs_a.name}" + ("" if fs_b is fs_a else f" vs {fs_b.name}")
        fig = figures.similarity_heatmap(
            matrix, fs_a.layers, fs_b.layers, title=title, row_title=fs_a.name, col_title=fs_b.name
        )
        widgets.chart(
            fig,
            cached.matrix_table(matrix, fs_a.layers, fs_b.layers),
            name=f"{metric}_{fs_a.name}_{fs_b.name}",
            key=f"sim_{metric}",
            image_format=ws.image_format,
        )
