"""Transferability: do training-free scores of a model's features rank how well it transfers to a new task?"""

import streamlit as st

from dashboard import errors, experiments, widgets, workspace
from gbs_core import figures
from gbs_core.experiments.transfer import TRANSFER_SCORES, default_sources
from gbs_core.pipeline import ModelSpec
from gbs_core.sources import DataSpec

st.set_page_config(page_title="Transfer · GBS Explorer", page_icon=workspace.FAVICON, layout="wide")
ws = workspace.show()
st.title("Transferability: scores without training vs the truth")
st.caption(
    "Each source model's penultimate features (the input of its classifier) on the target's training images give "
    "four scores without any training: dense GBS to the label graph, the same-class triangle fraction, modularity, "
    "and linear CKA to the one-hot labels. The truth, on the target's held-out images: a logistic-regression probe on "
    "the frozen features, and a short fine-tune of the whole network started from that probe. Kendall's tau tells "
    "which score ranks the sources as the truth does (the GBS paper's transferability claim). The zoo's epoch-0 "
    "checkpoints are randomly initialised networks: the floor."
)
own = {m.label: m.spec for m in ws.models if m.spec is not None}
all_sources = {**own, **{s: ModelSpec("zoo", s) for s in default_sources() if s not in own}}
picked = st.multiselect("Source models (the zoo's and the sidebar's)", list(all_sources), key="transfer_sources", bind="query-params",
                        default=["tiny10-s0", "tiny10-s0-digits", "resnet20", "resnet20-digits", "mlp8",
                                 "tiny10-s0-ep0", "resnet20-ep0"])
c0, c1, c2 = st.columns([2, 1, 1])
targets = {"digits": "plain digits", "digits-noise": "digits in noise", "image_folder": "an image folder"}
if ws.data.source in ("image_folder", "cifar10", "cifar100") and ws.data.path:
    targets["sidebar"] = f"the sidebar's data ({ws.data.source})"
target = c0.radio("Target task", list(targets), format_func=targets.get, horizontal=True, key="transfer_target", bind="query-params")
epochs = c1.number_input("Fine-tune epochs (0: probe only)", 0, 10, 1, key="transfer_epochs", bind="query-params")
n_scores = c2.number_input("Images for the scores", 50, 1257, 500, 50, key="transfer_n", bind="query-params")
folder = ""
if target == "image_folder":
    folder = st.text_input("Folder on this machine (one sub-folder per class; split 70/30 by class; each model "
                           "sees the images through the sidebar's input adapter)", key="transfer_folder").strip()
    if not folder:
        st.info("Enter the path of an image folder.")
        st.stop()
if len(picked) < 3:
    st.warning("Pick at least three source models: a ranking needs them.")
    st.stop()

with errors.guard("measure transferability"):
    spec = (experiments.data_for(ws) if target == "sidebar" else
            DataSpec("folder", folder) if target == "image_folder" else DataSpec(target))
    res = experiments.as_transfer(experiments.transfer(tuple(all_sources[p] for p in picked), spec, ws.adapter,
                                                       finetune_epochs=int(epochs), score_samples=int(n_scores)))
table = res.table()
corr = res.correlations()
score = st.selectbox("Score on the x axis", list(TRANSFER_SCORES), format_func=TRANSFER_SCORES.get,
                     key="transfer_score", bind="query-params")
widgets.chart(figures.transfer_figure(table, title=f"Transfer to {res.target}", score=score,
                                      score_label=TRANSFER_SCORES[score]),
              table, name=f"transfer_{res.target}", key="transfer_chart", image_format=ws.image_format)
st.subheader("Which score ranks the sources as the truth does?")
st.dataframe(corr[["label", "truth", "tau", "p", "n"]], hide_index=True, key="transfer_corr", column_config={
    "label": "score", "tau": st.column_config.NumberColumn("Kendall's tau", format="%.3f"),
    "p": st.column_config.NumberColumn("p-value", format="%.2g"), "n": "sources"})
st.dataframe(table, hide_index=True, key="transfer_table")
st.caption(f"{res.settings['n_train']} training and {res.settings['n_test']} held-out images of {res.target}; "
           f"scores on {res.settings['score_samples']} of the training images.")
widgets.csv_download(corr, name=f"transfer_correlations_{res.target}", key="transfer_corr_csv",
                     label="Download the correlations (CSV)")
