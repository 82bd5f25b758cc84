"""GBS Explorer home page: what the tool shows, the current selection, one summary card per model, the pages."""

import streamlit as st

from dashboard import navigation

st.set_page_config(page_title="GBS Explorer", page_icon=navigation.FAVICON, layout="wide")
st.title("GBS Explorer")
st.markdown(
    "A network turns each input into a vector at every layer. GBS Explorer connects each sample to its nearest "
    "neighbours in that vector space, **layer by layer**, and asks how the picture changes with depth. "
    "**Modularity Q** measures how well the kNN graph splits into the true classes: it usually rises with depth; "
    "where it stalls (a *plateau*) or falls (a *degradation*), the layers add little and are candidates for pruning. "
    "**CKA** and **GBS** compare two layers' representations (1 = same up to the allowed transforms), and "
    "**triangle motifs** count how often three mutually close samples share a class."
)

# The first paint above comes before the heavy imports (torch, pandas, pyvis: about 2.5 s in a fresh server process)
from dashboard import cached, errors, report, workspace  # noqa: E402
from gbs_core.metrics.modularity import PAPER_PRUNE_THRESHOLD as PRUNE_THRESHOLD  # noqa: E402

ws = workspace.show()
st.info(
    f"**Data:** {ws.data.label} · **Models:** {', '.join(ws.labels) or 'none'} · "
    f"**k:** {ws.k_modularity} (modularity), {ws.k_motifs} (motifs)",
    icon=":material/tune:",
)

with errors.guard("analyse the selection"):
    fs_list = cached.feature_sets(ws)
    cached.check_layers(fs_list)
    tables = [cached.modularity_table(fs, k=ws.k_modularity, threshold=PRUNE_THRESHOLD) for fs in fs_list]

for col, fs, table in zip(st.columns(min(len(fs_list), 3)) * len(fs_list), fs_list, tables, strict=False):
    with col.container(border=True):
        st.subheader(fs.name)
        accuracy, where = cached.accuracy(fs)
        a, b = st.columns(2)
        a.metric(f"Accuracy ({where})", "n/a" if accuracy is None else f"{accuracy:.1%}")
        b.metric("Layers analysed", len(fs.layers))
        a.metric("Final-layer modularity Q", f"{table['q'].iloc[-1]:.3f}")
        b.metric(f"Flagged by dQ < {PRUNE_THRESHOLD}", f"{int(table['prunable'].sum())} of {len(table)}",
                 help="Layers whose modularity gain over the previous layer is below the paper's threshold 0.03 "
                 "(plateaus and drops): candidates for pruning. The first layer is never flagged.")

for j, fs in enumerate(fs_list):  # work ahead: the Sample graph page's layers, prepared in the background
    cached.prepare_ahead(fs, fs.layers[-1], k=ws.k_modularity, method=st.session_state.get("sg_method", "umap"),
                         seed=ws.data.seed, view=f"m{j}")

st.subheader("Report")
st.caption("Every section of the Report page (settings, versions, modularity, similarity, motifs, sample graphs and "
           "the experiment results that exist) in one HTML file that opens offline.")
report.downloads(ws, key="home_report")

st.subheader("Explore")
navigation.explore_links()
