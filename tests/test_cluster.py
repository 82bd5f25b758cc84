"""Many models on a Dask cluster: the scheduler text, map_tasks (serial and on a 2-process LocalCluster), and the sanity
check, training dynamics and ``sanity-check --scheduler local`` giving the serial numbers, with the client writing the
cache a serial rerun reads."""

from __future__ import annotations

import time

import numpy as np
import pytest
from click.testing import CliRunner

from gbs_core import cluster
from gbs_core.cache import DiskCache
from gbs_core.cli import main
from gbs_core.cluster import TaskError, dask_client, map_tasks, parse_scheduler
from gbs_core.data import load_bundled
from gbs_core.experiments.dynamics import run_dynamics, zoo_dynamics_plan
from gbs_core.experiments.sanity import run_zoo_sanity_check

MODELS = ["tiny10-s0", "tiny10-s1"]
SMALL = dict(n_samples=60, pool=True, metrics=["linear_cka", "gbs_dense", "pwcca"])


@pytest.fixture(scope="module")
def client():
    """One 2-worker LocalCluster (processes, one thread each) for the module: starting one costs seconds."""
    with dask_client("local", workers=2) as c:
        yield c


@pytest.mark.parametrize(("text", "expected"), [
    (None, None), ("", None), ("local", "local"), (" LOCAL ", "local"), ("10.0.0.5:8786", "tcp://10.0.0.5:8786"),
    ("tcp://node7:8786", "tcp://node7:8786"), ("[::1]:8786", "tcp://[::1]:8786"), ("h:08786", "tcp://h:8786"),
])
def test_parse_scheduler_accepts(text, expected):
    assert parse_scheduler(text) == expected


@pytest.mark.parametrize(("text", "match"), [
    ("localhost", r"'localhost' has no port; write 'local' or HOST:PORT"),
    (":8786", r"':8786' has no host"),
    ("node7:abc", r"port 'abc' is not an integer in 1..65535"),
    ("node7:0", r"port '0' is not an integer in 1..65535"),
    ("node7:65536", r"port '65536' is not an integer"),
    ("node7:", r"port '' is not an integer"),
    ("tls://node7:8786", r"protocol 'tls' is not supported"),
    ("::1:8786", r"IPv6 host in brackets"),
])
def test_parse_scheduler_says_what_is_wrong(text, match):
    with pytest.raises(ValueError, match=match):
        parse_scheduler(text)


def test_dask_client_refuses_bad_arguments_before_starting_anything():
    with pytest.raises(ValueError, match="no scheduler given"), dask_client(""):
        pass
    with pytest.raises(ValueError, match="at least 1 worker; got 0"), dask_client("local", workers=0):
        pass
    with pytest.raises(ValueError, match="the scheduler at tcp://10.0.0.5:8786 has its own workers"):
        with dask_client("10.0.0.5:8786", workers=2):
            pass


def test_dask_client_names_an_unreachable_scheduler(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(ConnectionError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:1 .*dask scheduler"):
        with dask_client("127.0.0.1:1"):
            pass


def test_dask_client_names_a_scheduler_without_workers(monkeypatch):
    from distributed import LocalCluster

    monkeypatch.setattr(cluster, "WAIT_FOR_WORKERS_S", 1)
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as empty:
        with pytest.raises(ConnectionError, match=r"has no worker after 1 s; start one with `dask worker tcp://"):
            with dask_client(empty.scheduler_address):
                pass


def test_map_tasks_serial_keeps_order_and_reports_each_item():
    seen = []
    out = map_tasks(lambda x: x * 10, [3, 1, 2], progress=lambda d, n, m: seen.append((d, n, m)),
                    name=lambda x: f"item {x}")
    assert out == [30, 10, 20]
    assert seen == [(1, 3, "item 3 done (1/3)"), (2, 3, "item 1 done (2/3)"), (3, 3, "item 2 done (3/3)")]
    with pytest.raises(ZeroDivisionError):  # serially an error is the function's own
        map_tasks(lambda x: 1 // x, [1, 0])


def test_map_tasks_on_workers_returns_input_order_and_reports_in_finishing_order(client):
    import os

    seen = []
    # the first item sleeps longest; each task returns (item, its process, when it finished)
    out = map_tasks(lambda x: (x, os.getpid(), time.sleep(x) or time.time()), [0.6, 0.0, 0.3], client=client,
                    progress=lambda d, n, m: seen.append((d, n, m)), name=lambda x: f"item {x}")
    assert [x for x, _, _ in out] == [0.6, 0.0, 0.3]
    assert os.getpid() not in {pid for _, pid, _ in out}  # ran in the worker processes, not here
    by_finish = [x for x, _, _ in sorted(out, key=lambda r: r[2])]
    assert seen == [(i, 3, f"item {x} done ({i}/3)") for i, x in enumerate(by_finish, start=1)]


def test_a_task_that_fails_on_a_worker_names_its_item(client):
    with pytest.raises(TaskError, match=r"^model b: the task failed on a Dask worker \(ZeroDivisionError") as info:
        map_tasks(lambda x: 1 // x[1], [("a", 1), ("b", 0)], client=client, name=lambda x: f"model {x[0]}")
    assert info.value.name == "model b" and isinstance(info.value.__cause__, ZeroDivisionError)


def _entries(cache: DiskCache) -> set[str]:
    return {p.name for p in cache.entries()}


def test_sanity_check_on_the_cluster_is_the_serial_one_and_fills_the_cache(client, tmp_path, monkeypatch):
    serial_cache, cluster_cache = DiskCache(tmp_path / "serial"), DiskCache(tmp_path / "cluster")
    serial = run_zoo_sanity_check(MODELS, cache=serial_cache, **SMALL)
    steps = []
    remote = run_zoo_sanity_check(MODELS, cache=cluster_cache, client=client,
                                  progress=lambda d, n, m: steps.append(m), **SMALL)
    assert remote.models == serial.models and remote.layers == serial.layers and remote.settings == serial.settings
    assert remote.accuracy == serial.accuracy and remote.per_layer == serial.per_layer
    for key, mats in serial.matrices.items():
        assert set(remote.matrices[key]) == set(mats)
        assert all(np.array_equal(remote.matrices[key][p], S, equal_nan=True) for p, S in mats.items()), key
    features = [m for m in steps if m.startswith("features of")]  # one per model, as each finished
    assert sorted(m.split(" (")[0] for m in features) == [f"features of {m} done" for m in MODELS]
    assert [m.split(" (")[1] for m in features] == ["1/2)", "2/2)"]
    # the client wrote what the serial path writes, under the same keys
    assert _entries(cluster_cache) == _entries(serial_cache)

    # a serial rerun on the cluster's cache extracts nothing and computes nothing: same numbers
    def no_extraction(*args, **kwargs):
        raise AssertionError("extracted although the cluster cached the features")

    monkeypatch.setattr("gbs_core.pipeline.extract_activations", no_extraction)
    reread_cache = DiskCache(tmp_path / "cluster")
    again = run_zoo_sanity_check(MODELS, cache=reread_cache, **SMALL)
    assert again.accuracy == serial.accuracy and reread_cache.stats.misses == 0
    # and a cluster rerun reads the features here and sends no task
    steps.clear()
    run_zoo_sanity_check(MODELS, cache=reread_cache, client=client, progress=lambda d, n, m: steps.append(m), **SMALL)
    assert [m for m in steps if m.startswith("features of")] == [
        "features of tiny10-s0 read from the cache (1/2)", "features of tiny10-s1 read from the cache (2/2)"]


def test_training_dynamics_on_the_cluster_are_the_serial_ones(client, tmp_path):
    data = load_bundled("digits-noise", "test").subsample(60, seed=0)
    plan = zoo_dynamics_plan("tiny10-s0")
    serial_cache, cluster_cache = DiskCache(tmp_path / "serial"), DiskCache(tmp_path / "cluster")
    serial = run_dynamics(plan, data, cache=serial_cache)
    steps = []
    remote = run_dynamics(plan, data, cache=cluster_cache, client=client, progress=lambda d, n, m: steps.append((d, n)))
    assert remote.to_dict() == serial.to_dict()
    assert _entries(cluster_cache) == _entries(serial_cache)
    assert steps[0] == (1, 32) and steps[-1] == (32, 32) and [d for d, _ in steps] == sorted(d for d, _ in steps)


def _cli(cache, out, *extra):
    result = CliRunner().invoke(main, ["--cache-dir", str(cache), "sanity-check", "--out", str(out), "--models",
                                       ",".join(MODELS), "--n-samples", "60", "--pool", "--metrics",
                                       "linear_cka,gbs_dense", *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_cli_sanity_check_on_a_local_cluster_writes_the_serial_files(tmp_path):
    serial = _cli(tmp_path / "c1", tmp_path / "serial")
    remote = _cli(tmp_path / "c2", tmp_path / "local", "--scheduler", "local", "--workers", "2")
    assert "Dask: 2 worker(s) at tcp://127.0.0.1:" in remote.output
    for m in MODELS:
        assert f"features of {m} done" in remote.output
    files = sorted(p.name for p in (tmp_path / "serial").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "local").iterdir()) and "sanity.json" in files
    for name in files:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes(), name
    assert serial.stdout == remote.stdout  # the printed table


@pytest.mark.parametrize(("args", "match"), [
    (["--scheduler", "node7"], "'node7' has no port"),
    (["--workers", "3"], "it sets the size of --scheduler local; without --scheduler the command runs serially"),
    (["--scheduler", "node7:8786", "--workers", "3"], "the scheduler at tcp://node7:8786 has its own workers"),
    (["--scheduler", "local", "--workers", "0"], "0 is not in the range x>=1"),
])
def test_cli_refuses_bad_scheduler_options(tmp_path, args, match):
    for command in (["sanity-check"], ["dynamics", "tiny10-s0"]):
        result = CliRunner().invoke(main, [*command, "--out", str(tmp_path / "o"), *args])
        assert result.exit_code == 2 and match in result.output and "Traceback" not in result.output


def test_a_cluster_run_refuses_checkpoints_with_other_layers(client):
    from gbs_core.experiments.dynamics import Checkpoint, DynamicsPlan
    from gbs_core.pipeline import ModelSpec

    data = load_bundled("digits-noise", "test").subsample(40, seed=0)
    plan = DynamicsPlan("mixed", (Checkpoint("epoch 0", 0, ModelSpec("zoo", "resnet20")),
                                  Checkpoint("epoch 60", 60, ModelSpec("zoo", "tiny10-s0"))))
    with pytest.raises(ValueError, match=r"epoch 0 has layers \['stem', .*; the last checkpoint has \['features.0'"):
        run_dynamics(plan, data, client=client)


def test_require_cached_reads_or_refuses_without_extracting(tmp_path):
    from gbs_core.pipeline import ModelSpec, cached_activations, load_model

    data = load_bundled("digits-noise", "test").subsample(40, seed=0)
    loaded, cache = load_model(ModelSpec("zoo", "tiny10-s0")), DiskCache(tmp_path)
    with pytest.raises(LookupError, match=r"tiny10-s0: layer\(s\) \['features.0', .*are not in the cache"):
        cached_activations(loaded, data, cache=cache, require_cached=True)
    first = cached_activations(loaded, data, cache=cache)
    again = cached_activations(loaded, data, cache=cache, require_cached=True)
    assert all(np.array_equal(first.features[n], again.features[n]) for n in first.features)
