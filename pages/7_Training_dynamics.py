"""Training dynamics: how each layer's class communities form over a model's training checkpoints."""

import pandas as pd
import streamlit as st

from dashboard import errors, experiments, widgets, workspace
from gbs_core import figures
from gbs_core.experiments.dynamics import (
    DYNAMICS_METRICS,
    files_dynamics_plan,
    models_with_checkpoints,
    zoo_dynamics_plan,
)
from gbs_core.metrics.modularity import modularity_difference
from gbs_core.pipeline import ModelSpec
from gbs_core.zoo.families import WEIGHT_SUFFIXES
from gbs_core.zoo.registry import ARCHITECTURES, TORCHVISION_ARCHITECTURES

st.set_page_config(page_title="Training dynamics · GBS Explorer", page_icon=workspace.FAVICON, layout="wide")
ws = workspace.show()
st.title("Modularity over training")
st.caption(
    "Each layer's metrics at every saved checkpoint of one network, on held-out images (of a zoo model's training "
    "data, or of your own data in the sidebar): "
    f"modularity Q of the kNN graph (k = {ws.k_modularity}), the same-class triangle fraction (k = "
    f"{ws.k_motifs}) and linear CKA to the last checkpoint's same layer. The modularity paper finds Q of shallow "
    "layers nearly flat over training while Q of deep layers grows with accuracy. Uses the sidebar's k and pooling; "
    "the network and N are chosen here."
)
OWN = "your checkpoint files"
c0, c1 = st.columns([2, 1])
model = c0.selectbox("Network", [*models_with_checkpoints(), OWN], key="dyn_model", bind="query-params",
                     help="Zoo models that kept checkpoints at epochs 0 (initialisation), 1, 2, 4, 8, 16, 32 and the end.")
n = c1.number_input("Samples N (held-out images)", 20, 5000, 300, 20, key="dyn_n", bind="query-params")
files: tuple[str, ...] = ()
if model == OWN:
    archs = [*ARCHITECTURES, *TORCHVISION_ARCHITECTURES, workspace.OTHER_ARCH]
    arch = st.selectbox("Architecture the files were saved from", archs, key="dyn_arch", bind="query-params")
    if arch == workspace.OTHER_ARCH:
        arch = st.text_input("Architecture", placeholder="timm:resnet10t or torchvision:resnet50",
                             key="dyn_arch_name").strip()
    uploads = st.file_uploader(f"Weights files in training order (at most {workspace.MAX_UPLOAD_MB} MiB each; "
                               "the number after 'ep' in a name is its epoch)",
                               type=[s.lstrip(".") for s in WEIGHT_SUFFIXES], accept_multiple_files=True,
                               key="dyn_files", max_upload_size=workspace.MAX_UPLOAD_MB,
                               help="A larger file is refused by the browser before it is sent (a red mark on it).")
    if len(uploads or []) < 2 or not arch:
        st.info("Name the architecture and upload at least two checkpoints of it.")
        st.stop()
    with errors.guard("read the checkpoint files"):
        files = tuple(str(workspace.save_upload(u)) for u in uploads)
    model = arch

with errors.guard("compute the training dynamics"):
    data = experiments.data_for(ws, ModelSpec("checkpoint", model) if files else ModelSpec("zoo", model))
    st.caption(f"Data: {experiments.data_caption(data)}.")
    res = experiments.as_dynamics(experiments.dynamics(model, files, data, ws.adapter, n_samples=int(n), pool=ws.pool,
                                                       k=ws.k_modularity, motif_k=ws.k_motifs))
table = res.table()
metric = st.radio("Metric", list(DYNAMICS_METRICS), format_func=DYNAMICS_METRICS.get, horizontal=True, key="dyn_metric", bind="query-params")
widgets.chart(figures.dynamics_heatmap(res.matrix(metric), res.checkpoints, res.accuracy, res.layers,
                                       title=f"{DYNAMICS_METRICS[metric]} over training: {res.name}",
                                       metric_label=metric),
              table, name=f"dynamics_{res.name}", key="dyn_heat", image_format=ws.image_format)
st.caption(f"{len(res.checkpoints)} checkpoints, N = {res.settings['n_samples']}; test accuracy from "
           f"{100 * res.accuracy[0]:.1f}% to {100 * res.accuracy[-1]:.1f}% (in each row label).")

every_other = res.checkpoints[::2] + ([] if len(res.checkpoints) % 2 else res.checkpoints[-1:])
chosen = st.multiselect("Checkpoints to overlay", res.checkpoints, default=every_other, key=f"dyn_chosen_{res.name}", bind="query-params")
widgets.chart(figures.dynamics_curves(table, [c for c in res.checkpoints if c in chosen], metric=metric,
                                      metric_label=DYNAMICS_METRICS[metric]),
              table[table["checkpoint"].isin(chosen)], name=f"dynamics_curves_{res.name}", key="dyn_curves",
              image_format=ws.image_format)
change = res.change_table()
st.dataframe(change[["layer", "q_first", "q_last", "q_change", "same_class_fraction_change", "cka_to_last_first"]]
             .round(3), hide_index=True, key="dyn_change")

st.subheader("How far apart are the layers?")
pick = st.selectbox("Checkpoint", res.checkpoints, index=len(res.checkpoints) - 1, key="dyn_diff_ckpt", bind="query-params")
i = res.checkpoints.index(pick)
D = modularity_difference(res.matrix("q")[i])
plan = files_dynamics_plan(model, files) if files else zoo_dynamics_plan(model)
with errors.guard("compute CKA of this checkpoint"):
    cka = experiments.clean_similarity(plan.checkpoints[i].spec, data, ws.adapter, int(n), ws.pool,
                                       tuple(res.layers))
left, right = st.columns(2)
with left:
    widgets.chart(figures.layer_difference_heatmap(D, res.layers, title=f"|Q_i - Q_j|: {pick}"),
                  pd.DataFrame(D, index=res.layers, columns=res.layers).reset_index(names="layer"),
                  name=f"layer_difference_{res.name}", key="dyn_diff", image_format=ws.image_format)
with right:
    widgets.chart(figures.similarity_heatmap(cka, res.layers, res.layers, title=f"Linear CKA: {pick}",
                                             row_title="layer", col_title="layer"),
                  pd.DataFrame(cka, index=res.layers, columns=res.layers).reset_index(names="layer"),
                  name=f"cka_{res.name}", key="dyn_cka", image_format=ws.image_format)
st.caption("Left: the modularity paper's layer difference |Q_i - Q_j| (0 on the diagonal; dark blocks are layers "
           "with similar class structure). Right: linear CKA of the same layers, for comparison.")
