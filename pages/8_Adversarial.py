"""Adversarial inputs: do the class communities of attacked images collapse, layer by layer?"""

import pandas as pd
import streamlit as st

from dashboard import errors, experiments, widgets, workspace
from gbs_core import figures
from gbs_core.experiments.adversarial import ATTACKS, AttackSpec

st.set_page_config(page_title="Adversarial · GBS Explorer", page_icon=workspace.FAVICON, layout="wide")
ws = workspace.show()
st.title("Modularity under adversarial attack")
st.caption(
    "Held-out images (of a zoo model's training data, or of your own data in the sidebar) are attacked against the model (Adversarial Robustness Toolbox; "
    "images in [0, 1], FGSM and PGD with an L-inf budget eps, Carlini-Wagner L2, one-pixel), and each layer's kNN "
    f"graph (k = {ws.k_modularity}) is scored with the true classes as communities. The modularity paper finds the "
    "curves of attacked inputs far below the clean one. Uses the sidebar's models, k and pooling."
)
c0, c1 = st.columns([2, 1])
spec = widgets.model_picker(ws, key="adv_model", verb="attacked", container=c0)
n = c1.number_input("Samples N (held-out images)", 20, 5000, 200, 20, key="adv_n", bind="query-params")
with errors.guard("choose the data"):
    data = experiments.data_for(ws, spec)
st.caption(f"Data: {experiments.data_caption(data)}.")

a, b, c, d = st.columns(4)
kinds = a.multiselect("Attacks", list(ATTACKS), default=["fgsm", "pgd"], format_func=lambda k: ATTACKS[k].label,
                      key="adv_kinds", bind="query-params", help="CW and one-pixel are slow (about 0.6 s and 0.9 s per image on 2 cores).")
eps_text = b.text_input("eps for FGSM and PGD (comma-separated)", "0.03, 0.1", key="adv_eps", bind="query-params")
confidence = c.number_input("CW confidence", 0.0, 100.0, 0.0, 1.0, key="adv_conf", bind="query-params")
pixels = d.number_input("One-pixel: pixels changed", 1, 256, 1, key="adv_pixels", bind="query-params")

with errors.guard("read the attacks"):
    try:
        eps = list(dict.fromkeys(float(v) for v in eps_text.replace(";", ",").split(",") if v.strip()))
    except ValueError:
        raise errors.DashboardError(f"{eps_text!r}: write the eps values as numbers, e.g. 0.01, 0.03") from None
    attacks = []
    for kind in kinds:
        strengths = eps if kind in ("fgsm", "pgd") else [confidence if kind == "cw" else pixels]
        attacks += [AttackSpec(kind, s) for s in strengths]
if not attacks:
    st.warning("Pick at least one attack (and at least one eps for FGSM or PGD).")
    st.stop()
key = tuple((s.kind, float(s.strength)) for s in attacks)
slow = any(s.kind in ("cw", "one-pixel") for s in attacks)
with errors.guard("attack the model"):
    result = experiments.adversarial(spec, data, ws.adapter, key, n_samples=int(n), pool=ws.pool, k=ws.k_modularity,
                                     run=not slow)
    if result is None:
        st.info(f"{sum(s.kind in ('cw', 'one-pixel') for s in attacks)} slow attack(s) on {int(n)} images are not "
                "in the cache yet: several minutes on 2 CPU cores, with progress; finished chunks are kept.",
                icon=":material/schedule:")
        if not st.button("Run the attacks", key="adv_run", type="primary"):
            st.stop()
        result = experiments.adversarial(spec, data, ws.adapter, key, n_samples=int(n), pool=ws.pool,
                                         k=ws.k_modularity, run=True)
res = experiments.as_adversarial(result)
curves = res.curves_table()
widgets.chart(figures.adversarial_curves(curves, title=f"Modularity of clean and attacked inputs: {res.model}"),
              curves, name=f"adversarial_{res.model}", key="adv_curves", image_format=ws.image_format)
table = res.table()
st.dataframe(table[["attack", "accuracy", "mean_linf", *res.layers[-1:]]].rename(
    columns={res.layers[-1]: f"Q of {res.layers[-1]}"}), hide_index=True, key="adv_table", column_config={
    "accuracy": st.column_config.NumberColumn("accuracy", format="%.3f"),
    "mean_linf": st.column_config.NumberColumn("mean L-inf change", format="%.3f")})
st.caption(f"N = {res.settings['n_samples']} held-out images; accuracy on the clean images "
           f"{100 * res.accuracy[0]:.1f}%.")

st.subheader("How far apart are the layers?")
row = st.selectbox("Input set", res.attacks, key="adv_diff_row", bind="query-params")
D = res.difference(res.attacks.index(row))
with errors.guard("compute CKA of the clean inputs"):
    cka = experiments.clean_similarity(spec, data, ws.adapter, int(n), ws.pool, tuple(res.layers))
left, right = st.columns(2)
with left:
    widgets.chart(figures.layer_difference_heatmap(D, res.layers, title=f"|Q_i - Q_j|: {row}"),
                  pd.DataFrame(D, index=res.layers, columns=res.layers).reset_index(names="layer"),
                  name="adversarial_layer_difference", key="adv_diff", image_format=ws.image_format)
with right:
    widgets.chart(figures.similarity_heatmap(cka, res.layers, res.layers, title=f"Linear CKA (clean): {res.model}",
                                             row_title="layer", col_title="layer"),
                  pd.DataFrame(cka, index=res.layers, columns=res.layers).reset_index(names="layer"),
                  name="adversarial_cka", key="adv_cka", image_format=ws.image_format)
