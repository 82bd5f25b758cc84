"""The app's pages for ``st.navigation``: the home page, then every script in ``pages/`` in file-name order.

A page's title comes from its file name as Streamlit infers it (``2_Modularity.py`` -> "Modularity", URL
``/Modularity``), so a new file in ``pages/`` joins the sidebar and the home page's list without being registered
here; ``ABOUT`` only adds an icon and a one-line description to its link on the home page.
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

__all__ = ["ABOUT", "FAVICON", "HOME", "page_files", "pages", "explore_links"]

ROOT = Path(__file__).resolve().parents[1]
FAVICON = str(ROOT / "assets" / "ui" / "favicon.png")  # local: no icon CDN
HOME = "home.py"
ABOUT = {
    "1_Sample_graph.py": (":material/hub:", "the kNN graph and UMAP of one layer"),
    "2_Modularity.py": (":material/show_chart:", "Q over depth and prunable layers"),
    "3_Similarity.py": (":material/grid_on:", "CKA and GBS layer x layer"),
    "4_Motifs.py": (":material/change_history:", "triangle types over depth"),
    "5_Pruning.py": (":material/content_cut:", "remove the flagged layers, fine-tune, compare with a control"),
    "6_Sanity_check.py": (":material/fact_check:", "does each index find the same layer across seeds?"),
    "7_Training_dynamics.py": (":material/timeline:", "Q of every layer over training checkpoints"),
    "8_Adversarial.py": (":material/bug_report:", "Q curves of attacked inputs beside the clean one"),
    "9_Stitching.py": (":material/join_inner:", "does the motif statistic predict model stitching?"),
    "10_Transfer.py": (":material/swap_horiz:", "rank source models for a new task without training"),
    "11_Report.py": (":material/description:", "one offline HTML (or PDF) file of the workspace for a lab meeting"),
}


def _order(path: Path) -> tuple[int, str]:
    number = re.match(r"\d+", path.name)
    return (int(number.group()) if number else 1 << 30, path.name)


def page_files() -> list[str]:
    """Every page script, ``"pages/<file>.py"`` relative to the app's root, by numeric prefix then name."""
    return [f"pages/{p.name}" for p in sorted((ROOT / "pages").glob("*.py"), key=_order)]


def pages() -> list[st.Page]:
    """Home (the default page, at the app's root URL) and every file of :func:`page_files`.

    No icons here: Streamlit fetches a navigation entry's Material icon from fonts.gstatic.com (the app must make no
    request off the machine); the home page's links draw theirs from the bundled font.
    """
    return [st.Page(HOME, title="Home", default=True), *map(st.Page, page_files())]


def explore_links() -> None:
    """A link to every page but home, with its icon and description."""
    for file in page_files():
        icon, about = ABOUT.get(Path(file).name, (None, ""))
        title = st.Page(file).title
        st.page_link(file, label=f"{title}: {about}" if about else title, icon=icon)
