"""Hostile and degenerate inputs to the core: each class of defect of the hardening issue, written from what a file
or a user can do. Tiny files must not exhaust memory, wrong data must not give a silently wrong number, and the
cache must never serve an entry that is not its own. The catalogue is tests/BAD_INPUTS.md."""

from __future__ import annotations

import os
import shutil
import time
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from gbs_core.activations import load_saved_activations, save_activations
from gbs_core.cache import ORPHAN_SECONDS, CacheWarning, DiskCache
from gbs_core.data import DataError, load_cifar, load_image_folder
from gbs_core.sources import DataSpec, analysis_data, check_data_root, content_signature

# --- bounds from what the data really is ----------------------------------------------------------------------------


def test_npz_labels_up_to_a_billion_make_as_many_classes_as_values(tmp_path):
    path = tmp_path / "big_labels.npz"
    np.savez(path, **{"layer:a": np.eye(4, dtype=np.float32)}, labels=np.array([0, 10**9, 10**9, 5]))
    assert path.stat().st_size < 4096
    _, labels, _, names = load_saved_activations(path)
    assert names == ("0", "5", "1000000000") and labels.tolist() == [0, 2, 2, 1]


def test_npz_negative_labels_keep_their_classes(tmp_path):
    path = tmp_path / "neg.npz"
    np.savez(path, **{"layer:a": np.eye(3, dtype=np.float32)}, labels=np.array([-1, 0, 1]),
             predictions=np.array([1, 0, -1]))
    _, labels, preds, names = load_saved_activations(path)
    assert names == ("-1", "0", "1") and labels.tolist() == [0, 1, 2] and preds.tolist() == [2, 1, 0]


def test_npz_labels_beyond_the_class_names_and_fractional_labels_are_refused(tmp_path):
    save_activations(tmp_path / "a.npz", {"a": np.eye(3)}, np.array([0, 1, 2]), class_names=["x", "y"])
    with pytest.raises(ValueError, match="labels must index class_names"):
        load_saved_activations(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", **{"layer:a": np.eye(2, dtype=np.float32)}, labels=np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="not integer class indices"):
        load_saved_activations(tmp_path / "b.npz")


def test_a_small_npz_that_unpacks_to_gigabytes_is_refused_before_reading(tmp_path, monkeypatch):
    import gbs_core.activations as acts

    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:  # 64 MiB of zeros compress to about 64 KiB
        np.lib.format.write_array(zf.open("layer:a.npy", "w", force_zip64=True), np.zeros((1024, 16384), np.float32))
        np.lib.format.write_array(zf.open("labels.npy", "w"), np.zeros(1024, np.int64))
    assert path.stat().st_size < 1 << 20
    monkeypatch.setattr(acts, "MAX_ACTIVATIONS_UNPACKED_BYTES", 32 << 20)
    with pytest.raises(ValueError, match="unpacks to 64 MiB"):
        load_saved_activations(path)


def _png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_a_declared_huge_image_is_refused_before_decoding(tmp_path):
    big = Image.new("L", (8000, 8000))  # 64 M pixels, a few hundred KB as PNG
    (tmp_path / "a").mkdir()
    big.save(tmp_path / "a" / "huge.png", optimize=True)
    assert (tmp_path / "a" / "huge.png").stat().st_size < 1 << 20
    with pytest.raises(DataError, match="8000x8000 pixels; images over 16,777,216 pixels are refused"):
        load_image_folder(tmp_path)


def test_a_decompression_bomb_gets_the_projects_error(tmp_path, monkeypatch):
    Image.new("L", (2000, 2000)).save(tmp_path / "bomb.png")
    (tmp_path / "f" / "a").mkdir(parents=True)
    shutil.copy(tmp_path / "bomb.png", tmp_path / "f" / "a" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # Pillow's bomb check (raised at 2x this)
    with pytest.raises(DataError, match="declares more pixels"):
        load_image_folder(tmp_path / "f")


def test_a_folder_over_the_memory_budget_is_refused_before_allocating(tmp_path, monkeypatch):
    import gbs_core.data as data

    for i in range(4):
        _png(tmp_path / "a" / f"{i}.png", np.zeros((64, 64), np.uint8))
    monkeypatch.setattr(data, "MAX_FOLDER_BYTES", 4 * 64 * 64 * 4 - 1)
    with pytest.raises(DataError, match="need 0 MiB as float32"):
        load_image_folder(tmp_path)


def test_16_bit_png_is_read_at_its_bit_depth(tmp_path):
    values = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    _png(tmp_path / "a" / "x.png", values)
    _png(tmp_path / "b" / "y.png", values[::-1])
    data = load_image_folder(tmp_path)
    np.testing.assert_allclose(data.images[0, 0].numpy(), values / 65535.0, rtol=1e-6)
    assert data.input_shape == (1, 2, 2)
    rgb = load_image_folder(tmp_path, channels=3)
    np.testing.assert_allclose(rgb.images[0, 2].numpy(), values / 65535.0, rtol=1e-6)


def test_cifar_pixels_outside_bytes_are_refused(tmp_path):
    import pickle

    with open(tmp_path / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [b"a", b"b"]}, fh)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.full((2, 3072), 1000, dtype=np.int64), b"labels": [0, 1]}, fh)
    with pytest.raises(DataError, match="bytes 0..255.*from 1000 to 1000"):
        load_cifar(tmp_path)


def test_a_cifar_folder_lacking_files_does_not_list_the_folder(tmp_path):
    (tmp_path / "secret-name.txt").write_text("x")
    with pytest.raises(DataError) as err:
        load_cifar(tmp_path)
    assert "secret-name" not in str(err.value) and "batches.meta" in str(err.value)


# --- identity by content -------------------------------------------------------------------------------------------


def test_a_folder_changed_in_place_gets_a_new_signature_and_id(tmp_path):
    _png(tmp_path / "a" / "0.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "b" / "0.png", np.full((4, 4), 9, np.uint8))
    sig, ident = content_signature("folder", str(tmp_path)), load_image_folder(tmp_path).dataset_id
    assert content_signature("folder", str(tmp_path)) == sig  # stable while nothing changes
    time.sleep(0.01)
    _png(tmp_path / "a" / "0.png", np.full((4, 4), 200, np.uint8))
    assert content_signature("folder", str(tmp_path)) != sig
    assert load_image_folder(tmp_path).dataset_id != ident
    assert content_signature("digits-noise", "") == ""


# --- the data root --------------------------------------------------------------------------------------------------


def test_paths_outside_the_data_root_are_refused_without_a_listing(tmp_path, monkeypatch):
    inside = tmp_path / "lab"
    _png(inside / "data" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    monkeypatch.setenv("GBS_DATA_ROOT", str(inside))
    assert check_data_root(str(inside / "data")) == (inside / "data").resolve()
    for outside in ("/etc", str(inside / ".." / "elsewhere"), str(tmp_path)):
        with pytest.raises(DataError, match="outside the data folder this server offers") as err:
            analysis_data(DataSpec("cifar10", outside))
        assert "passwd" not in str(err.value)
    (inside / "link").symlink_to("/etc")
    with pytest.raises(DataError, match="outside"):
        check_data_root(str(inside / "link"))


# --- the disk cache -------------------------------------------------------------------------------------------------


def test_a_cache_entry_copied_over_another_is_not_served(tmp_path):
    cache = DiskCache(tmp_path)
    a = cache.put({"k": "a"}, {"x": np.zeros(3)})
    b = cache.put({"k": "b"}, {"x": np.ones(3)})
    shutil.copy(a, b)
    assert cache.get({"k": "b"}) is None and cache.stats.corrupt == 1
    assert cache.get({"k": "a"})[0]["x"].tolist() == [0, 0, 0]


def test_orphaned_temporaries_are_counted_then_removed(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=10**9)
    cache.put({"k": 1}, {"x": np.zeros(10)})
    (tmp_path / "ab").mkdir()
    young, old = tmp_path / "ab" / ".tmp-young.npz", tmp_path / "ab" / ".tmp-old.npz"
    young.write_bytes(b"\0" * 1000)
    old.write_bytes(b"\0" * 5000)
    past = time.time() - ORPHAN_SECONDS - 60
    os.utime(old, (past, past))
    total = cache.size_bytes()
    assert not old.exists() and young.exists() and cache.stats.orphans_removed == 1
    assert total == sum(p.stat().st_size for p in tmp_path.glob("*/*"))  # the young one is counted


def test_an_entry_larger_than_the_limit_is_not_stored_and_evicts_nothing(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=2000)
    kept = cache.put({"k": "small"}, {"x": np.zeros(10)})
    assert cache.put({"k": "huge"}, {"x": np.zeros(1000)}) is None and cache.stats.too_large == 1
    assert kept.exists() and cache.get({"k": "small"}) is not None


def test_eviction_keeps_the_entry_just_written(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=3000)
    first = cache.put({"k": 1}, {"x": np.zeros(200)})  # about 2 KB each with the zip overhead
    second = cache.put({"k": 2}, {"x": np.zeros(200)})
    assert second.exists() and not first.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_folder_warns_once_then_runs_uncached(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.warns(CacheWarning, match="GBS_CACHE_DIR"):
            cache = DiskCache(folder)
        assert cache.disabled and cache.put({"k": 1}, {"x": np.zeros(2)}) is None
    finally:
        folder.chmod(0o700)


def test_a_cache_folder_that_is_a_file_warns_once_then_runs_uncached(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = DiskCache(blocker / "cache")
        assert cache.get_or_compute({"k": 1}, lambda: {"x": np.arange(3)})[0]["x"].tolist() == [0, 1, 2]
        cache.put({"k": 2}, {"x": np.zeros(2)})
    messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(messages) == 1 and "GBS_CACHE_DIR" in messages[0] and cache.disabled
