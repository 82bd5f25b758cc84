"""Shared test set-up: the project root on sys.path, and a throw-away disk cache for the whole session."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Never touch the user's cache from tests; set before anything imports the core.
os.environ.setdefault("GBS_CACHE_DIR", tempfile.mkdtemp(prefix="gbs-test-cache-"))
os.environ.setdefault("OMP_NUM_THREADS", "2")


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def module_disk_cache(tmp_path_factory):
    """A disk cache of its own for one test module (set through GBS_CACHE_DIR, restored afterwards)."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("gbs_cache")
    mp.setenv("GBS_CACHE_DIR", str(path))
    yield path
    mp.undo()
