"""The dashboard's report of the workspace (Home's button and the Report page): :func:`gbs_core.report.report_html`
fed with the sidebar's models and settings, the experiment results that exist, a progress bar, and the downloads.

Which experiment results go in: the run each experiment page showed in this session (its own settings), else a
finished run with the page's default settings read from the disk cache (nothing is trained or computed here): pruning
of each sidebar model, the sanity check of the first Tiny-10 seeds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from dashboard import cached, errors, experiments, widgets
from gbs_core import export, figures
from gbs_core.experiments.pruning import PruningResult
from gbs_core.experiments.sanity import SanityResult, zoo_seed_models
from gbs_core.pipeline import ModelSpec
from gbs_core.report import SECTIONS, ReportModel, ReportSettings, report_html

__all__ = ["remember", "build", "downloads"]

_RESULTS = "report_results"  # session: {"pruning": {model label: dict}, "sanity": dict}
_PAGE = "report_page"  # session: the last report made, {"html": str, "name": str, "pdf": bytes | None}


def remember(kind: str, result: dict, label: str = "") -> None:
    """Keep an experiment page's result for the report: ``kind`` "pruning" (per model ``label``) or "sanity"."""
    store = st.session_state.setdefault(_RESULTS, {"pruning": {}, "sanity": None})
    if kind == "pruning":
        store["pruning"][label] = result
    else:
        store["sanity"] = result


def _pruning_results(ws) -> list[PruningResult]:
    shown = st.session_state.get(_RESULTS, {}).get("pruning", {})
    out = []
    for m in ws.models:
        if m.label in shown:
            out.append(PruningResult.from_dict(shown[m.label]))
        elif m.spec is not None:
            try:
                d = experiments.pruning(m.spec, experiments.data_for(ws, m.spec), ws.adapter, run=False,
                                        k=ws.k_modularity, **experiments.PRUNING_DEFAULTS)
            except (errors.DashboardError, ValueError, RuntimeError, LookupError):
                d = None  # a model that cannot be pruned has no pruning section
            if d is not None:
                out.append(PruningResult.from_dict(d))
    return out


def _sanity_result(ws) -> dict | None:
    shown = st.session_state.get(_RESULTS, {}).get("sanity")
    if shown is not None:
        return shown
    specs = tuple(ModelSpec("zoo", m) for m in zoo_seed_models("tiny10")[:experiments.SANITY_DEFAULT_MODELS])
    try:
        return experiments.sanity(specs, experiments.data_for(ws, specs[0]), ws.adapter, pool=ws.pool, run=False,
                                  n_samples=experiments.SANITY_DEFAULTS["n_samples"],
                                  metrics=tuple(experiments.SANITY_DEFAULTS["metrics"]))
    except (LookupError, errors.DashboardError, ValueError):
        return None


def build(ws, sections: list[str], *, graph_layers: tuple[str, ...] = (), max_nodes: int = 500) -> str:
    """The report of the workspace ``ws`` as HTML, with a progress bar that names each step."""
    fs_list = cached.feature_sets(ws)
    cached.check_layers(fs_list)
    models = []
    for fs, m in zip(fs_list, ws.models, strict=False):
        accuracy, where = cached.accuracy(fs)
        notes = tuple(cached.model_for_data(m.spec, ws.data.source, ws.data.path, ws.adapter).notes) if m.spec else ()
        models.append(ReportModel(fs, accuracy, where, notes))
    settings = ReportSettings(data=ws.data.where, n_samples=fs_list[0].n_samples, seed=ws.data.seed,
                              k=ws.k_modularity, motif_k=ws.k_motifs, pool=ws.pool, graph_layers=graph_layers,
                              max_nodes=max_nodes, sections=tuple(sections))
    bar = st.progress(0.0, text="Report: starting")
    try:
        pruning = _pruning_results(ws) if "pruning" in sections else []
        sanity = _sanity_result(ws) if "sanity" in sections else None
        return report_html(models, settings, cache=cached.disk_cache(), pruning=pruning,
                           sanity=SanityResult.from_dict(sanity) if sanity else None,
                           progress=lambda done, total, step: bar.progress(done / max(total, 1),
                                                                          text=f"Report: {step}"))
    finally:
        bar.empty()


def _identity(ws, sections: list[str]) -> tuple:
    """What a made report depends on: the workspace and the sections (a changed selection needs a new report)."""
    return (repr(ws), tuple(sections))


def _pdf(page: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="gbs-report-") as folder:
        html_path = Path(folder) / "report.html"
        html_path.write_text(page, encoding="utf-8")
        return export.print_pdf(html_path, Path(folder) / "report.pdf").read_bytes()


def downloads(ws, sections: list[str] | None = None, *, key: str, pdf: bool = False,
              graph_layers: tuple[str, ...] = (), max_nodes: int = 500) -> None:
    """A "Make the report" button; once made, the downloads of the HTML (and of the PDF when asked)."""
    sections = list(sections or SECTIONS)
    if st.button("Make a report of this workspace", key=f"{key}_make", type="primary",
                 icon=":material/description:"):
        with errors.guard("make the report"):
            page = build(ws, sections, graph_layers=graph_layers, max_nodes=max_nodes)
            made = {"html": page, "name": figures.file_stem("report", **st.session_state.get(widgets.FIGURE_SETTINGS, {})),
                    "pdf": None, "pdf_error": "", "of": _identity(ws, sections)}
            if pdf:
                with st.spinner("Printing the PDF through Chromium"):
                    try:
                        made["pdf"] = _pdf(page)
                    except export.ExportError as exc:
                        made["pdf_error"] = str(exc)
            st.session_state[_PAGE] = made
    made = st.session_state.get(_PAGE)
    if not made or made["of"] != _identity(ws, sections):  # a report of another selection is not offered
        return
    st.success(f"Report made: {len(made['html']) / 1e6:.1f} MB, self-contained (opens offline).",
               icon=":material/check_circle:")
    c1, c2 = st.columns(2)
    c1.download_button("Download the report (HTML)", made["html"].encode(), file_name=f"{made['name']}.html",
                       mime="text/html", key=f"{key}_html", on_click="ignore", icon=":material/download:")
    if made["pdf"] is not None:
        c2.download_button("Download the report (PDF)", made["pdf"], file_name=f"{made['name']}.pdf",
                           mime="application/pdf", key=f"{key}_pdf", on_click="ignore", icon=":material/download:")
    elif made["pdf_error"]:
        c2.warning(made["pdf_error"], icon=":material/picture_as_pdf:")
