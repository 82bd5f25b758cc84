"""Turn failures into messages that say what to change: no page ever shows a traceback.

``guard(what)`` wraps the computing part of a page: any exception becomes an ``st.error`` naming what failed, the
core's own message (which names the offending value), and the sidebar control to change, then the page stops.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from gbs_core.data import DataError
from gbs_core.zoo import CheckpointError

__all__ = ["DashboardError", "describe", "guard", "hint_for"]


class DashboardError(ValueError):
    """A problem with the workspace selection whose message already tells the user what to change."""


_HINTS: list[tuple[type[BaseException], re.Pattern, str]] = [
    (DataError, re.compile(r""), "Check the data **Source** and **Path** in the sidebar."),
    (CheckpointError, re.compile(r"does not fit this architecture"),
     "Pick the architecture the file was saved from (a head with another number of classes is fine)."),
    (CheckpointError, re.compile(r""), "Upload a state_dict or .safetensors file of the chosen architecture."),
    (
        ValueError,
        re.compile(r"neighbours need more than"),
        "Lower **k** under *Graph parameters* in the sidebar (k must be smaller than N and than each batch), or raise N.",
    ),
    (ValueError, re.compile(r"no layers selected"), "Select at least one layer under **Layers** in the sidebar."),
    (ValueError, re.compile(r"unknown architecture|unknown model family"),
     "Check the architecture's name (torchvision:NAME or timm:NAME)."),
    (ValueError, re.compile(r"activations file|\.npz|labels"), "Check the **Path** of the saved activations."),
    (
        RuntimeError,
        re.compile(r"shape|size|channels|mat1 and mat2", re.I),
        "The model does not accept this data's images even through the input adapter: set another **Image size** "
        "under *Input adapter* in the sidebar (a model trained at one size needs that size), or pick other data.",
    ),
    (MemoryError, re.compile(r""), "Lower **Samples N** or select fewer layers."),
]


def hint_for(exc: BaseException) -> str:
    """The sidebar change that fixes ``exc``, or an empty string when there is no specific advice."""
    if isinstance(exc, DashboardError):
        return ""
    for kind, pattern, hint in _HINTS:
        if isinstance(exc, kind) and pattern.search(str(exc)):
            return hint
    return ""


def describe(exc: BaseException) -> str:
    """One paragraph for the user: the message and, when known, what to change."""
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError):
        message = f"unknown name {message}"
    elif not isinstance(exc, ValueError | RuntimeError | MemoryError | OSError):
        message = f"{type(exc).__name__}: {message}"
    hint = hint_for(exc)
    return f"{message} {hint}".strip()


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Run a page's computation; on any exception show an ``st.error`` and stop the page (no traceback)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the one place where every failure becomes a message
        st.error(f"Could not {what}: {describe(exc)}", icon=":material/error:")
        st.stop()
