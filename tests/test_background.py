"""The background preparation of a model's layers (issue 10): it fills the disk cache with what the Sample graph
page reads, never runs a job twice, works outward from the layer on screen, and stops when superseded or when its
session is gone."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from dashboard import background
from gbs_core import analysis
from gbs_core.analysis import feature_set_from_arrays
from gbs_core.cache import DiskCache


def _fs(n_layers=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 12)
    feats = {f"l{i}": rng.normal(size=(36, 5)) + labels[:, None] * i for i in range(n_layers)}
    return feature_set_from_arrays(f"toy{seed}", feats, labels, class_names=["a", "b", "c"])


@pytest.fixture(autouse=True)
def _clean_registry():
    yield
    background.stop_all()
    with background._LOCK:
        background._JOBS.clear()


def test_outward_order_starts_at_the_layer_on_screen():
    assert background._outward(["a", "b", "c", "d", "e"], "c") == ["c", "d", "b", "e", "a"]
    assert background._outward(["a", "b", "c"], "zz") == ["a", "b", "c"]
    assert background._outward(["a", "b", "c"], "a") == ["a", "b", "c"]


def test_a_job_fills_the_cache_with_what_the_page_reads(tmp_path):
    cache = DiskCache(tmp_path)
    fs = _fs()
    job = background.prepare(fs, cache, k=3, method="pca", seed=0, max_nodes=20, start="l2")
    job.thread.join(timeout=120)
    assert job.finished and job.done == job.total == 5 and not job.error
    assert job.status() == "toy0: all 5 layers prepared"
    hits = cache.stats.hits
    for layer in fs.layers:  # the page's calls are now disk reads, equal to computing afresh
        nodes, xy = analysis.layer_graph_layout(fs, layer, k=3, max_nodes=20, seed=0, cache=cache)
        fresh_nodes, fresh_xy = analysis.layer_graph_layout(fs, layer, k=3, max_nodes=20, seed=0)
        np.testing.assert_array_equal(nodes, fresh_nodes)
        np.testing.assert_allclose(xy, fresh_xy)
        np.testing.assert_allclose(analysis.layer_embedding(fs, layer, method="pca", cache=cache),
                                   analysis.layer_embedding(fs, layer, method="pca"))
    assert cache.stats.hits - hits >= 2 * len(fs.layers)


def test_a_job_is_never_run_twice(tmp_path):
    cache = DiskCache(tmp_path)
    gate = threading.Event()
    starts = []

    def alive(sessions):
        starts.append(1)
        gate.wait(10)
        return True

    fs = _fs()
    first = background.prepare(fs, cache, k=3, method="pca", session="s1", alive=alive)
    second = background.prepare(fs, cache, k=3, method="pca", session="s2", alive=alive)
    assert first is second and first.sessions == {"s1", "s2"}
    assert sum(t.name.startswith("gbs-prepare-") for t in threading.enumerate()) == 1
    gate.set()
    first.thread.join(timeout=120)
    assert first.finished
    third = background.prepare(fs, cache, k=3, method="pca", session="s3")  # done: joined, not rerun
    assert third is first and not third.running


def test_a_superseded_job_stops_and_a_gone_session_stops_its_job(tmp_path):
    cache = DiskCache(tmp_path)
    gate = threading.Event()

    def slow(sessions):
        gate.wait(10)
        return True

    fs = _fs(n_layers=6)
    old = background.prepare(fs, cache, k=3, method="pca", group="view", alive=slow)
    new = background.prepare(fs, cache, k=5, method="pca", group="view", alive=slow)  # the user changed k
    assert old is not new and old.stop.is_set() and not new.stop.is_set()
    gate.set()
    old.thread.join(timeout=60)
    new.thread.join(timeout=120)
    assert not old.finished and old.done < old.total and new.finished
    gone = background.prepare(_fs(seed=1), cache, k=3, method="pca", session="closed", alive=lambda s: False)
    gone.thread.join(timeout=60)
    assert gone.done == 0 and not gone.finished and not gone.running
    again = background.prepare(_fs(seed=1), cache, k=3, method="pca", session="back")  # resumable: restarted
    again.thread.join(timeout=120)
    assert again is not gone and again.finished


def test_disabled_by_the_environment(monkeypatch):
    monkeypatch.setenv("GBS_BACKGROUND", "0")
    assert not background.enabled()
    monkeypatch.setenv("GBS_BACKGROUND", "1")
    assert background.enabled()


def test_a_job_waits_while_a_page_is_being_drawn(tmp_path):
    busy = threading.Event()
    busy.set()
    job = background.prepare(_fs(), DiskCache(tmp_path), k=3, method="pca", busy=busy.is_set)
    job.thread.join(timeout=0.5)
    assert job.running and job.done == 0  # a page is running: nothing done meanwhile
    busy.clear()
    job.thread.join(timeout=120)
    assert job.finished and job.done == job.total
