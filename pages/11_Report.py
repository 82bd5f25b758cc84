"""Report: one self-contained HTML file (and a PDF) of the workspace's results, for a lab meeting."""

import streamlit as st

from dashboard import cached, errors, report, workspace
from gbs_core.report import SECTIONS, graph_layers

st.set_page_config(page_title="Report · GBS Explorer", page_icon=workspace.FAVICON, layout="wide")
ws = workspace.show()
st.title("Report")
st.caption(
    "One HTML file that opens offline anywhere: the settings (data, N, seed, models with their weights fingerprint "
    "and accuracy, layers, k, thresholds), the versions of the libraries, the date, and the sections picked below. "
    "Pruning appears when a run of the sidebar's models is in the cache (shown on the Pruning page, or run with the "
    "default settings); the sanity check when the Sanity check page showed one in this session."
)

with errors.guard("load the features"):
    fs_list = cached.feature_sets(ws)
    cached.check_layers(fs_list)

c1, c2 = st.columns([2, 1])
sections = c1.multiselect("Sections", list(SECTIONS), default=list(SECTIONS), format_func=SECTIONS.get,
                          key="report_sections", bind="query-params")
layers = fs_list[0].layers
chosen = c1.multiselect("Layers whose sample graphs are drawn", layers, default=graph_layers(layers),
                        key=f"report_layers_{fs_list[0].model_id}", bind="query-params",
                        help="Layers of the first model; a model that lacks them shows its first, middle and last.")
max_nodes = c2.number_input("Samples drawn per graph", 50, 1000, 500, 50, key="report_nodes", bind="query-params")
pdf = c2.toggle("Also a PDF (printed by Chromium)", key="report_pdf", bind="query-params")
if not sections:
    st.warning("Pick at least one section.")
    st.stop()
report.downloads(ws, sections, key="report", pdf=pdf, graph_layers=tuple(chosen), max_nodes=int(max_nodes))
