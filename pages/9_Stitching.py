"""Model stitching: does the motif statistic (or CKA, or GBS) predict whether B can classify A's representation?"""

import streamlit as st

from dashboard import errors, experiments, widgets, workspace
from gbs_core import figures
from gbs_core.experiments.stitching import STITCH_INDICES

st.set_page_config(page_title="Stitching · GBS Explorer", page_icon=workspace.FAVICON, layout="wide")
ws = workspace.show()
st.title("Model stitching vs motifs, CKA and GBS")
st.caption(
    "Network A runs up to a layer, a stitching layer (a 1x1 convolution, or a linear map for vectors, with ReLU; "
    "started from the least-squares fit and trained alone) feeds its output to network B from the same depth on, and "
    "the stitched network is tested on held-out images. The GBS paper says the same-class triangle fraction of A's "
    "layer tells whether another model can classify that representation; the rank correlation below checks it "
    "against CKA and GBS of the two layers. Trained on the training split of A's data (a zoo model's own, or your data "
    "in the sidebar); network B's head must classify that data. The sidebar's models are offered beside the zoo."
)
models = experiments.experiment_models(ws)
names = list(models)
c0, c1, c2, c3 = st.columns([2, 2, 1, 1])
a = c0.selectbox("Network A (bottom)", names, index=names.index("tiny10-s0"), key="stitch_a", bind="query-params")
b = c1.selectbox("Network B (top)", names, index=names.index("tiny10-s1"), key="stitch_b", bind="query-params")
epochs = c2.number_input("Epochs per stitch", 0, 10, 1, key="stitch_epochs", bind="query-params",
                         help="0 keeps the closed-form (least-squares) stitch.")
lr = c3.number_input("Learning rate", 0.0001, 0.1, 0.005, format="%.4f", key="stitch_lr", bind="query-params")
all_pairs = st.toggle("Every layer of A x every layer of B (otherwise the matched layers)", key="stitch_all", bind="query-params")

params = dict(all_pairs=all_pairs, epochs=int(epochs), lr=float(lr))
with errors.guard("stitch the networks"):
    data = experiments.data_for(ws, models[a])
    st.caption(f"Data: {experiments.data_caption(data)}.")
    result = experiments.stitching(models[a], models[b], data, ws.adapter, **params, run=False)
    if result is None:
        st.info("These stitches are not in the cache yet: each pair trains its stitch for the chosen epochs (Tiny-10: "
                "a few seconds per pair and epoch on 2 CPU cores).", icon=":material/schedule:")
        if not st.button("Train the stitches", key="stitch_run", type="primary"):
            st.stop()
        result = experiments.stitching(models[a], models[b], data, ws.adapter, **params, run=True)
res = experiments.as_stitching(result)
pairs = res.pairs_table()
if pairs.empty:
    st.warning(f"No pair of layers could be stitched: the layers of {a} are vectors and a vector cannot feed a conv "
               f"map of {b}. Pick another network A or B.")
    st.stop()
left, right = st.columns(2)
with left:
    widgets.chart(figures.stitching_heatmap(res.accuracy, res.layers_a, res.layers_b, title="Stitched accuracy",
                                            model_a=a, model_b=b),
                  pairs, name=f"stitching_{a}_{b}", key="stitch_heat", image_format=ws.image_format)
corr = res.correlations()
with right:
    index = st.selectbox("Index", list(STITCH_INDICES), format_func=STITCH_INDICES.get, key="stitch_index", bind="query-params")
    rho = float(corr.set_index("index").loc[index, "rho"])
    widgets.chart(figures.stitching_scatter(pairs, index, index_label=STITCH_INDICES[index], rho=rho,
                                            title="Stitched accuracy vs index"),
                  pairs, name=f"stitching_scatter_{index}", key="stitch_scatter", image_format=ws.image_format)
st.subheader("Which index predicts stitching?")
st.dataframe(corr[["label", "rho", "p", "n"]], hide_index=True, key="stitch_corr", column_config={
    "label": "index", "rho": st.column_config.NumberColumn("Spearman rho", format="%.3f"),
    "p": st.column_config.NumberColumn("p-value", format="%.2g"), "n": "pairs"})
st.caption(f"A = {a} ({100 * res.accuracy_a:.1f}% alone), B = {b} ({100 * res.accuracy_b:.1f}% alone); "
           f"{len(pairs)} stitched pairs, indices on {res.settings['index_samples']} held-out images.")
widgets.csv_download(corr, name=f"stitching_correlations_{a}_{b}", key="stitch_corr_csv",
                     label="Download correlations (CSV)")
st.subheader("Every stitched pair beside its indices")
st.dataframe(pairs.round(4), hide_index=True, key="stitch_pairs")
