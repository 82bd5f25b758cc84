import os
import time

import numpy as np
import pytest

from gbs_core.cache import DiskCache, cache_key


def test_round_trip_after_restart(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(6.0).reshape(2, 3), "names": np.array(["a", "b"])}, {"n": 2}

    key = {"model": "m1", "layer": "stem", "k": 3}
    a, meta = DiskCache(tmp_path).get_or_compute(key, compute)
    b, meta2 = DiskCache(tmp_path).get_or_compute(key, compute)  # a new instance = an app restart
    assert calls == [1]
    np.testing.assert_array_equal(a["x"], b["x"])
    assert b["names"].tolist() == ["a", "b"] and meta == meta2 == {"n": 2}


def test_keys_are_content_based():
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})
    with pytest.raises(TypeError, match="cache keys hold"):
        cache_key({"a": object()})


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_corrupt_entry_is_recomputed(tmp_path, damage):
    cache = DiskCache(tmp_path)
    key = {"k": damage}
    cache.put(key, {"x": np.arange(1000.0)})
    path = cache.path_for(key)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\0" * 100)
    else:  # same length, one payload byte changed: only the checksum can tell
        i = raw.index(np.arange(1000.0)[500].tobytes())
        path.write_bytes(raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1 :])
    assert cache.get(key) is None
    assert not path.exists()
    arrays, _ = cache.get_or_compute(key, lambda: {"x": np.ones(2)})
    np.testing.assert_array_equal(arrays["x"], np.ones(2))
    assert cache.stats.corrupt == 1


def test_failed_write_leaves_no_entry(tmp_path):
    cache = DiskCache(tmp_path)
    with pytest.raises(TypeError):
        cache.put({"k": 1}, {"x": np.array([object()], dtype=object)})
    assert cache.entries() == [] and list(tmp_path.glob("*/.tmp-*")) == []
    with pytest.raises(RuntimeError):
        cache.get_or_compute({"k": 2}, lambda: (_ for _ in ()).throw(RuntimeError("fail")))
    assert cache.entries() == []


def test_lru_eviction(tmp_path):
    one = np.zeros(10_000)  # ~80 kB per entry
    cache = DiskCache(tmp_path, max_bytes=10**9)
    for i in range(3):
        cache.put({"i": i}, {"x": one})
        t = time.time() - 100 + i
        os.utime(cache.path_for({"i": i}), (t, t))
    size = cache.path_for({"i": 0}).stat().st_size
    assert cache.get({"i": 0}) is not None  # touching entry 0 makes entry 1 the least recently used
    cache.max_bytes = 2 * size + 10
    assert cache.evict() == 1
    assert cache.get({"i": 1}) is None
    assert cache.get({"i": 0}) is not None and cache.get({"i": 2}) is not None
    assert cache.size_bytes() <= cache.max_bytes


def test_reserved_names(tmp_path):
    with pytest.raises(ValueError, match="reserved by the cache"):
        DiskCache(tmp_path).put({"k": 1}, {"__meta__": np.ones(1)})
