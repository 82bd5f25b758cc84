"""Sanity check: can each similarity index find the same layer in a network trained from another seed?"""

import pandas as pd
import streamlit as st

from dashboard import errors, experiments, report, widgets, workspace
from gbs_core import figures
from gbs_core.experiments.sanity import SANITY_METRICS, zoo_seed_models
from gbs_core.pipeline import ModelSpec

st.set_page_config(page_title="Sanity check · GBS Explorer", page_icon=workspace.FAVICON, layout="wide")
ws = workspace.show()
st.title("Layer-identification sanity check")
st.caption(
    "For every ordered pair of the zoo's Tiny-10 networks of one width (same architecture, different seeds) and "
    "every layer of "
    "the first, an index passes when the most similar layer of the second is the same layer. Accuracy is the mean "
    "over layers and pairs (chance ≈ 1/8); the CKA paper's Table 2 numbers (CIFAR-10, N = 10,000) are shown beside "
    "ours (held-out images of the networks' training data). Uses the sidebar's pooling setting; the models and N are "
    "chosen here."
)
families = {"tiny10": "Tiny-10, 1x width", "tiny10x2": "Tiny-10, 2x width", "tiny10x4": "Tiny-10, 4x width"}
families = {f: label for f, label in families.items() if len(zoo_seed_models(f)) >= 2}
labels = {m.key: m.label for m in SANITY_METRICS}
own = {m.label: m.spec for m in ws.models if m.spec is not None}
SIDEBAR = "the sidebar's models"
c0, c1, c2 = st.columns([1, 2, 1])
family = c0.selectbox("Family", [*families, *([SIDEBAR] if len(own) >= 2 else [])],
                      format_func=lambda f: families.get(f, f), key="sanity_family", bind="query-params",
                      help="A zoo family, or (with two or more models in the sidebar, e.g. your checkpoints of one "
                      "architecture from different seeds) the sidebar's models.")
if family == SIDEBAR:
    models = c1.multiselect("Networks", list(own), default=list(own), key="sanity_models_sidebar", bind="query-params")
    specs = tuple(own[m] for m in models)
else:
    seeds = zoo_seed_models(family)
    models = c1.multiselect("Networks", seeds, default=seeds[:experiments.SANITY_DEFAULT_MODELS],
                            key=f"sanity_models_{family}", bind="query-params")
    specs = tuple(ModelSpec("zoo", m) for m in models)
n = c2.number_input("Samples N (held-out images)", 20, 5000, experiments.SANITY_DEFAULTS["n_samples"], 10, key="sanity_n", bind="query-params")
metrics = st.multiselect("Indices", list(labels), default=list(experiments.SANITY_DEFAULTS["metrics"]),
                         format_func=labels.get, key="sanity_metrics", bind="query-params",
                         help="The CCA family costs most (an SVD per layer, one per pair of layers).")
if len(models) < 2 or not metrics:
    st.warning("Pick at least two networks and one index.")
    st.stop()

with errors.guard("run the sanity check"):
    data = experiments.data_for(ws, specs[0])
    st.caption(f"Data: {experiments.data_caption(data)}.")
    result = experiments.sanity(specs, data, ws.adapter, n_samples=int(n), pool=ws.pool, metrics=tuple(metrics))
    res = experiments.as_sanity(result)
    report.remember("sanity", result)
table = res.table()
widgets.chart(figures.sanity_bar_figure(table), table, name="sanity_check", key="sanity", image_format=ws.image_format)
st.dataframe(table[["index", "ours_pct", "paper_pct", "ordered_pairs", "layers"]], hide_index=True, key="sanity_table",
             column_config={"ours_pct": st.column_config.NumberColumn("ours (%)", format="%.1f"),
                            "paper_pct": st.column_config.TextColumn("CKA paper (%)")})
st.caption(f"{len(res.models)} networks, {table['ordered_pairs'].iloc[0]} ordered pairs, N = {res.settings['n_samples']}, "
           f"pooling {'on' if res.settings['pool'] else 'off'}.")

st.subheader("Where an index fails")
d1, d2, d3 = st.columns(3)
key = d1.selectbox("Index", list(res.accuracy), format_func=labels.get, key="sanity_heat_metric", bind="query-params")
a = d2.selectbox("Network a (rows)", res.models, index=0, key="sanity_a", bind="query-params")
b = d3.selectbox("Network b (columns)", [m for m in res.models if m != a], index=0, key="sanity_b", bind="query-params")
S, pred, ok = res.pair_heatmap(key, res.models.index(a), res.models.index(b))
st.plotly_chart(figures.identification_heatmap(S, res.layers, pred, title=f"{labels[key]}: {a} vs {b}"),
                key="sanity_heatmap")
st.caption(f"× marks each row's most similar layer: green when it is the same layer, red otherwise "
           f"({int(ok.sum())} of {len(ok)} correct).")
per_layer = res.per_layer_table().round(1)
st.dataframe(per_layer, key="sanity_per_layer")
widgets.csv_download(pd.DataFrame(S, index=res.layers, columns=res.layers).reset_index(names="layer"),
                     name=f"sanity_{key}_{a}_{b}", key="sanity_heat_csv", label="Download this heatmap (CSV)")
