"""Sample graph: one layer's kNN graph (pyvis) beside the UMAP/PCA scatter of the same layer."""

import streamlit as st

from dashboard import cached, errors, widgets, workspace
from gbs_core import figures

st.set_page_config(page_title="Sample graph · GBS Explorer", page_icon=workspace.FAVICON, layout="wide")
ws = workspace.show()
st.title("Sample graph")
st.caption(
    f"Each sample is a node joined to its {ws.k_modularity} most cosine-similar samples in the chosen layer "
    "(k for modularity in the sidebar); colours are the true classes. Classes that form separate clumps are "
    "what a high modularity Q means. Hover a node for its index, true and predicted class. "
    f"{cached.KNN_SEARCH_NOTE}"
)

with errors.guard("load the features"):
    fs_list = cached.feature_sets(ws)
    cached.check_layers(fs_list)

a, b = st.columns([1, 2])
compare = a.toggle(
    "Two views side by side",
    key="sg_compare", bind="query-params",
    persist_state="session",
    help="Compare two layers, or the same layer of two models.",
)
method = b.radio(
    "Scatter", ["umap", "pca"], format_func=str.upper, horizontal=True, key="sg_method", bind="query-params", persist_state="session"
)

views = st.columns(2) if compare else [st.container()]
for i, view in enumerate(views):
    with view:
        fs, layer = widgets.layer_picker(fs_list, key=f"sg{i}", default="first" if i else "last")
        with errors.guard(f"draw layer {layer}"):
            page, drawn = cached.graph_html(fs, layer, k=ws.k_modularity, seed=ws.data.seed)
            q = cached.modularity(fs, k=ws.k_modularity)[layer].mean()
        st.markdown(f"**{fs.name} · {layer}** — modularity Q = {q:.3f}")
        if drawn < fs.n_samples:
            st.info(
                f"Drawing {drawn} of {fs.n_samples} samples (stratified by class) to keep the graph readable; "
                f"the kNN graph and every metric use all {fs.n_samples}.",
                icon=":material/info:",
            )
        graph_col, scatter_col = (st.container(), st.container()) if compare else st.columns(2)
        with graph_col:
            widgets.graph(page, name=f"{fs.name}_{layer}_knn{ws.k_modularity}", key=f"sg{i}")
        # the other layers are laid out and embedded in the background, nearest first, for the slider's next move
        cached.prepare_ahead(fs, layer, k=ws.k_modularity, method=method, seed=ws.data.seed,
                             view=f"m{fs_list.index(fs)}")
        with scatter_col:  # the graph is on the page already while the scatter is computed
            with errors.guard(f"embed layer {layer}"):
                xy = cached.embedding(fs, layer, method=method, seed=ws.data.seed)
            fig = figures.embedding_scatter(
                xy,
                fs.labels,
                fs.class_names,
                fs.predictions,
                method=method.upper(),
                title=f"{method.upper()} of {layer}",
            )
            widgets.chart(
                fig,
                cached.embedding_table(fs, xy),
                name=f"{fs.name}_{layer}_{method}",
                key=f"sg{i}",
                image_format=ws.image_format,
            )
