"""Pruning: remove the layers the modularity rule flags, fine-tune, and compare with pruning unflagged layers."""

import streamlit as st

from dashboard import errors, experiments, report, widgets, workspace
from gbs_core import figures
from gbs_core.experiments.pruning import CRITERIA

st.set_page_config(page_title="Pruning · GBS Explorer", page_icon=workspace.FAVICON, layout="wide")
ws = workspace.show()
st.title("Modularity- and GBS-guided pruning")
st.caption(
    "Layers whose modularity gain dQ is below the threshold are flagged (Modularity page), or, with the GBS "
    "criterion, layers whose dense GBS similarity to the previous layer is above it. A flagged unit is removed "
    "when the network still fits without it (a residual block with an identity shortcut, a conv or linear block of "
    "equal width); the others are listed with the reason. The pruned model is fine-tuned on the training split "
    "(for a zoo model on the bundled data, the data it was trained on, the digits in noise freshly transformed each "
    "epoch; for your own data, CIFAR's split or a folder's seeded 70/30 split) and tested on the held-out part; a "
    "head that does not predict the data's classes is replaced by a fresh one first. **Control:** as many removable units that were *not* flagged, drawn "
    "at random per seed and fine-tuned identically. The criterion's curve is computed on training images."
)
spec = widgets.model_picker(ws, key="prune_model", verb="pruned")
with errors.guard("choose the data"):
    data = experiments.data_for(ws, spec)
st.caption(f"Data: {experiments.data_caption(data)}.")

criterion = st.radio("Criterion", list(CRITERIA), format_func=lambda c: f"{c}: {CRITERIA[c]}", horizontal=True,
                     key="prune_criterion", bind="query-params")
c1, c2, c3, c4 = st.columns(4)
if criterion == "modularity":
    rule = c1.selectbox("Threshold", ["0.03 (paper)", "median dQ", "custom"], key="prune_rule", bind="query-params",
                        help="The paper's rule flags layers whose gain dQ is below 0.03. The median of dQ flags about "
                        "half, always leaving unflagged layers for the control (on the plain digits Q is high from the "
                        "first layer, so 0.03 flags nearly every layer there).")
    threshold = {"0.03 (paper)": 0.03, "median dQ": "median"}.get(rule)
    if threshold is None:
        threshold = c1.number_input("dQ threshold", 0.0, 0.5, 0.01, 0.001, format="%.3f", key="prune_thr", bind="query-params")
else:
    rule = c1.selectbox("Threshold", ["median GBS", "custom"], key="prune_rule_gbs", bind="query-params",
                        help="The GBS paper gives no number: the median of the similarities to the previous layer flags "
                        "about half the layers (those that change the sample graph least).")
    threshold = "median" if rule == "median GBS" else c1.number_input(
        "GBS threshold", 0.0, 1.0, 0.99, 0.001, format="%.3f", key="prune_thr_gbs", bind="query-params")
epochs = c2.number_input("Fine-tuning epochs", 0, 100, experiments.PRUNING_DEFAULTS["epochs"], key="prune_epochs", bind="query-params")
lr = c2.number_input("Learning rate", 0.0001, 1.0, experiments.PRUNING_DEFAULTS["lr"], format="%.4f", key="prune_lr", bind="query-params")
n_controls = c3.number_input("Control seeds", 0, 10, len(experiments.PRUNING_DEFAULTS["control_seeds"]), key="prune_controls", bind="query-params")
train_n = c3.number_input("Training images (0: all)", 0, 50_000, 0, 50, key="prune_train_n", bind="query-params")
curve_n = c4.number_input("Images for the curve", 20, 5000, experiments.PRUNING_DEFAULTS["curve_samples"], key="prune_curve_n", bind="query-params")

params = dict(criterion=criterion, threshold=threshold, epochs=int(epochs), lr=float(lr), control_seeds=tuple(range(int(n_controls))),
              curve_samples=int(curve_n), train_samples=int(train_n) or None, k=ws.k_modularity)
with errors.guard("prune the model"):
    result = experiments.pruning(spec, data, ws.adapter, **params, run=False)
    if result is None:
        st.info("This run is not in the cache yet. Fine-tuning takes a while (ResNet-56: about 2 s per epoch per "
                "model on 2 CPU cores).", icon=":material/schedule:")
        if not st.button("Run pruning", key="prune_run", type="primary"):
            st.stop()
        result = experiments.pruning(spec, data, ws.adapter, **params, run=True)
res = experiments.as_pruning(result)
report.remember("pruning", result, label=next(m.label for m in ws.models if m.spec == spec))

plan = res.plan
if res.settings.get("head"):
    st.caption(f"Head: {res.settings['head']}.")
if not plan.to_remove and not plan.control_pool:
    st.warning(f"{res.model_label} has no removable unit among its analysed layers: every one changes the shape of "
               "what flows through it (see the reasons below), so nothing can be cut out without retraining.")
st.subheader("What the rule flags")
a, b, c = st.columns(3)
sign = "dQ <" if plan.criterion == "modularity" else "GBS to previous >"
a.metric(f"Flagged ({sign} {plan.threshold:.4g}, rule: {rule})", f"{len(plan.flagged)} of {len(plan.units)}")
b.metric("Removed in the pruned model", len(plan.to_remove))
c.metric("Unflagged removable (control pool)", len(plan.control_pool))
units = res.units_table()
st.dataframe(units, hide_index=True, key="prune_units")
if plan.not_removable_flagged:
    st.caption("Flagged but kept: " + "; ".join(f"**{u.name}**: {u.reason}" for u in plan.not_removable_flagged))
widgets.csv_download(units, name="pruning_units", key="prune_units_csv", label="Download units (CSV)")

st.subheader("Accuracy and size")
table = res.table()
if res.flagged is None:
    st.warning("No flagged unit can be removed: nothing to prune at this threshold.")
widgets.chart(figures.pruning_figure(table, title=f"Pruning: {res.model_label}"), table, name="pruning",
              key="prune", image_format=ws.image_format)
st.dataframe(table, hide_index=True, key="prune_table", column_config={
    "params_reduction_pct": st.column_config.NumberColumn("params −%", format="%.1f"),
    "flops_reduction_pct": st.column_config.NumberColumn("FLOPs −%", format="%.1f"),
    "accuracy_before_finetune": st.column_config.NumberColumn("acc. before", format="%.4f"),
    "accuracy_after_finetune": st.column_config.NumberColumn("acc. after", format="%.4f"),
})
summary = res.control_summary()
if summary and "flagged" in summary:
    st.markdown(
        f"**Flagged vs control** after fine-tuning: flagged {summary['flagged']:.2%}; controls "
        f"{summary['control_mean']:.2%} ± {summary['control_std']:.2%} (min {summary['control_min']:.2%}, "
        f"max {summary['control_max']:.2%}, {summary['n_controls']} seeds); difference "
        f"{100 * summary['flagged_minus_control_mean']:+.2f} points."
    )
