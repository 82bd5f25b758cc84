"""Shared helpers of the AppTest page tests."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # the first UMAP fit compiles numba code


def open_page(page: str = "app.py", **query: str | list[str]) -> AppTest:
    """Run the app, with ``query`` as the URL's query parameters, and switch to ``page``."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    if page != "app.py":
        at.switch_page(page)
        at.run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def values(a) -> np.ndarray:
    """A plotly array from a figure's JSON: a list, or a typed array ``{"dtype", "bdata"[, "shape"]}``."""
    if isinstance(a, dict) and "bdata" in a:
        out = np.frombuffer(base64.b64decode(a["bdata"]), dtype=a["dtype"])
        return out.reshape([int(s) for s in str(a["shape"]).split(",")]) if "shape" in a else out
    return np.asarray(a)


def by_key(elements, key):
    """The element of ``elements`` (e.g. ``at.selectbox``) whose widget key is ``key``."""
    return next(e for e in elements if e.key == key)
