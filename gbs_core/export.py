"""Files of figures: one self-contained HTML page of several figures, static PNG/SVG/PDF images, a PDF of a page.

Static images go through kaleido, which drives a Chromium installed on the machine (Debian's ``chromium``, or the
browser named by ``BROWSER_PATH``); nothing is downloaded. Without a Chromium these raise :class:`ExportError` saying
how to install one. HTML pages carry plotly.js inline once, however many figures they hold, and reference nothing off
the machine, so they open offline.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

__all__ = [
    "FIGURE_FORMATS",
    "STATIC_FORMATS",
    "ExportError",
    "chromium_path",
    "figure_div",
    "html_document",
    "parse_formats",
    "print_pdf",
    "write_figures_html",
    "write_static",
]

FIGURE_FORMATS = ("html", "png", "svg", "pdf")
STATIC_FORMATS = ("png", "svg", "pdf")
STATIC_WIDTH = 900  # pixels of a static figure (its height is the figure's own)
_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
_INSTALL = ("install Chromium (Debian/Ubuntu: `sudo apt-get install chromium`) or set BROWSER_PATH to a Chromium or "
            "Chrome executable")
# a headless Chromium that talks to nothing but the page it is given
_QUIET_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
                "--no-default-browser-check", "--disable-quic")


class ExportError(RuntimeError):
    """A figure or page could not be written (no Chromium, a bad format); the message says what to do."""


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"png,svg"`` -> ``("png", "svg")``, checked against :data:`FIGURE_FORMATS` (order kept, repeats dropped)."""
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    bad = [t for t in items if t not in FIGURE_FORMATS]
    if bad or not items:
        raise ExportError(f"unknown figure format(s) {bad or [text]}; choose from {', '.join(FIGURE_FORMATS)}")
    return tuple(dict.fromkeys(items))


def chromium_path() -> str | None:
    """The Chromium to use: ``BROWSER_PATH`` when it names an executable, else the first of the usual names on PATH
    (or /usr/bin/chromium); None when there is none."""
    env = os.environ.get("BROWSER_PATH", "")
    if env and os.path.isfile(env) and os.access(env, os.X_OK):
        return env
    for name in _BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def _require_chromium(what: str) -> str:
    path = chromium_path()
    if path is None:
        raise ExportError(f"{what} needs a Chromium on this machine and none was found: {_INSTALL}. The HTML files "
                          "need no browser (--format html).")
    os.environ["BROWSER_PATH"] = path  # kaleido's choreographer looks here first (a stale, invalid value included)
    return path


def write_static(figures: Mapping[str, go.Figure], folder: str | Path, formats: Sequence[str],
                 *, width: int = STATIC_WIDTH, scale: float = 2.0) -> list[Path]:
    """Write each figure as ``folder/<name>.<format>`` for each of ``formats`` (png, svg, pdf) through kaleido, in one
    browser session. ``name`` is used as given (e.g. :func:`gbs_core.figures.file_stem`). Returns the paths."""
    formats = [f for f in formats if f != "html"]
    bad = [f for f in formats if f not in STATIC_FORMATS]
    if bad:
        raise ExportError(f"unknown static format(s) {bad}; choose from {', '.join(STATIC_FORMATS)}")
    if not formats or not figures:
        return []
    _require_chromium("Writing PNG, SVG or PDF figures")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figs, paths, fmts = [], [], []
    for name, fig in figures.items():
        for fmt in formats:
            figs.append(fig)
            paths.append(folder / f"{name}.{fmt}")
            fmts.append(fmt)
    try:
        pio.write_images(figs, paths, format=fmts, width=width, scale=scale)
    except Exception as exc:  # kaleido and choreographer raise their own types; say what failed and what to do
        raise ExportError(f"the static figures could not be written ({type(exc).__name__}: {exc}); check that the "
                          f"Chromium at {chromium_path()} starts (or {_INSTALL})") from exc
    return paths


def figure_div(fig: go.Figure, *, div_id: str, config: Mapping | None = None) -> str:
    """One figure as a ``<div>`` and its drawing script, without plotly.js (the page carries it once)."""
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                       config=dict(config or {"displaylogo": False, "responsive": True}))


_STYLE = """
body { font-family: Helvetica, Arial, sans-serif; color: #262730; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { margin-top: 1.5em; } nav ol { columns: 2; } .meta { color: #555; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f6; }
.figure { margin: 1em 0; break-inside: avoid; page-break-inside: avoid; }
.note { background: #f6f7fb; border-left: 4px solid #8a94ad; padding: 0.5em 0.9em; }
@media print { body { max-width: none; margin: 0; } nav { display: none; } h2 { break-before: auto; } }
"""


def html_document(title: str, body: str) -> str:
    """A complete HTML page: ``title`` (escaped), the body given (already HTML), plotly.js inline once."""
    plotly_js = get_plotlyjs()
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style>\n<script type=\"text/javascript\">{plotly_js}</script>\n"
            f"</head><body>\n{body}\n</body></html>\n")


def write_figures_html(path: str | Path, title: str, figures: Mapping[str, go.Figure], *, intro: str = "") -> Path:
    """All ``figures`` on one self-contained page with an index at the top (``name`` -> figure); ``intro`` is plain
    text shown under the title."""
    items, blocks = [], []
    for i, (name, fig) in enumerate(figures.items()):
        anchor = f"fig{i}"
        items.append(f'<li><a href="#{anchor}">{html.escape(name)}</a></li>')
        blocks.append(f'<section class="figure" id="{anchor}"><h2>{html.escape(name)}</h2>'
                      f"{figure_div(fig, div_id=f'{anchor}-plot')}</section>")
    body = (f"<h1>{html.escape(title)}</h1>" + (f'<p class="meta">{html.escape(intro)}</p>' if intro else "")
            + f"<nav><ol>{''.join(items)}</ol></nav>" + "".join(blocks))
    path = Path(path)
    path.write_text(html_document(title, body), encoding="utf-8")
    return path


def print_pdf(html_path: str | Path, pdf_path: str | Path, *, timeout: float = 180.0) -> Path:
    """Print a local HTML page to PDF with the machine's headless Chromium (its scripts run first, so plotly figures
    are drawn). Raises :class:`ExportError` without a Chromium, or when it fails or writes nothing."""
    browser = _require_chromium("A PDF of the report")
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path).resolve()
    with tempfile.TemporaryDirectory(prefix="gbs-pdf-") as profile:
        cmd = [browser, *_QUIET_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
               "--run-all-compositor-stages-before-draw", "--virtual-time-budget=20000",
               f"--print-to-pdf={pdf_path}", html_path.as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ExportError(f"Chromium ({browser}) did not print the PDF: {exc}") from exc
    if done.returncode != 0 or not pdf_path.is_file() or pdf_path.stat().st_size == 0:
        raise ExportError(f"Chromium ({browser}) did not print the PDF (exit {done.returncode}): "
                          f"{done.stderr.strip()[-400:]}")
    return pdf_path
