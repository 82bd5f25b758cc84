"""The dashboard says, before extracting, when a request's features do not fit the memory budget or the machine."""

from __future__ import annotations

from collections import namedtuple

import psutil
import pytest
from apptest_helpers import open_page

pytestmark = pytest.mark.usefixtures("module_disk_cache")


def test_features_over_the_budget_are_warned_about_before_the_work(monkeypatch):
    monkeypatch.setenv("GBS_MEMORY_BUDGET", "64K")
    at = open_page("pages/2_Modularity.py", n="123")  # an N no other test uses: no in-process cache hit
    assert not at.exception and not at.error
    text = " ".join(w.value for w in at.warning)
    assert "take" in text and "for 123 samples, over the memory budget of 64.0 KiB" in text
    assert "--memory-budget" in text
    assert at.get("plotly_chart"), "the page still draws its figure"


def test_features_larger_than_the_memory_there_is_are_refused(monkeypatch):
    monkeypatch.setenv("GBS_MEMORY_BUDGET", "64K")
    mem = namedtuple("mem", "available total")(100_000, 100_000)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: mem)
    at = open_page("pages/2_Modularity.py", n="124")
    assert not at.exception
    text = " ".join(e.value for e in at.error)
    assert "more than the 97.7 KiB of memory available: nothing was extracted" in text
    assert not at.get("plotly_chart")
