import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from gbs_core.data import (
    DataError,
    Dataset,
    digits_split_indices,
    load_cifar,
    load_digits,
    load_image_folder,
    stratified_subsample,
)


def test_digits_split_is_fixed_stratified_and_disjoint():
    train, test = digits_split_indices()
    assert len(train) == 1257 and len(test) == 540
    assert len(np.intersect1d(train, test)) == 0
    assert len(np.union1d(train, test)) == 1797
    full = load_digits("all")
    test_counts = np.bincount(full.labels[test], minlength=10)
    all_counts = np.bincount(full.labels, minlength=10)
    # stratified: each class's share of the test split is within one sample of 30%
    assert np.all(np.abs(test_counts - 0.3 * all_counts) <= 1)
    assert np.array_equal(test, digits_split_indices()[1])


def test_digits_preprocessing_values():
    raw = __import__("sklearn.datasets", fromlist=["load_digits"]).load_digits()
    d = load_digits("all", size=8)
    assert d.images.shape == (1797, 1, 8, 8)
    # size 8 keeps the raw grid: values are raw / 16
    np.testing.assert_allclose(d.images[5, 0].numpy(), raw.images[5] / 16.0, rtol=0, atol=1e-7)
    d16 = load_digits("test")
    assert d16.images.shape == (540, 1, 16, 16) and d16.images.dtype == torch.float32
    assert float(d16.images.min()) >= 0.0 and float(d16.images.max()) <= 1.0
    assert d16.class_names == tuple("0123456789")
    with pytest.raises(ValueError, match="split must be one of"):
        load_digits("val")


def test_stratified_subsample_counts_and_reproducibility():
    d = load_digits("test")
    s1 = stratified_subsample(d, 100, seed=3)
    s2 = d.subsample(100, seed=3)
    s3 = d.subsample(100, seed=4)
    assert len(s1) == 100
    assert s1.dataset_id == s2.dataset_id and s1.dataset_id != s3.dataset_id
    assert torch.equal(s1.images, s2.images)
    full_counts = np.bincount(d.labels, minlength=10)
    sub_counts = np.bincount(s1.labels, minlength=10)
    assert np.all(np.abs(sub_counts - 100 * full_counts / len(d)) < 1)
    assert d.subsample(len(d)) is d
    with pytest.raises(DataError, match="asked for 541 samples but the data set has 540"):
        d.subsample(541)
    with pytest.raises(DataError, match="choose N between 1 and 540"):
        d.subsample(0)


def test_stratified_subsample_hand_example():
    # 6 of class 0, 3 of class 1, 1 of class 2; n = 5 -> exact shares 3, 1.5, 0.5 -> floor 3, 1, 0; the two
    # remaining... one remaining slot goes to the larger fractional part (tie 0.5 vs 0.5 -> lower class index: 1)
    labels = np.array([0] * 6 + [1] * 3 + [2])
    d = Dataset(torch.zeros(10, 1, 2, 2), labels, ("a", "b", "c"), "toy")
    s = stratified_subsample(d, 5, seed=0)
    assert np.bincount(s.labels, minlength=3).tolist() == [3, 2, 0]


def test_dataset_validates_shapes():
    with pytest.raises(DataError, match=r"images must have shape \(N, C, H, W\)"):
        Dataset(torch.zeros(3, 4), np.zeros(3, dtype=np.int64), ("a",), "x")
    with pytest.raises(DataError, match="3 images but 2 labels"):
        Dataset(torch.zeros(3, 1, 2, 2), np.zeros(2, dtype=np.int64), ("a",), "x")


def _write_folder(root, sizes=((4, 4), (4, 4)), mode="L"):
    for cls, n in (("cat", 2), ("dog", 3)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            arr = np.full(sizes[0][::-1] + ((3,) if mode == "RGB" else ()), 40 * i + (0 if cls == "cat" else 100),
                          dtype=np.uint8)
            Image.fromarray(arr, mode=mode).save(root / cls / f"{i}.png")


def test_image_folder_loads_classes_in_sorted_order(tmp_path):
    _write_folder(tmp_path)
    d = load_image_folder(tmp_path)
    assert d.class_names == ("cat", "dog")
    assert d.labels.tolist() == [0, 0, 1, 1, 1]
    assert d.images.shape == (5, 1, 4, 4)
    assert d.images[3, 0, 0, 0].item() == pytest.approx(140 / 255)
    assert load_image_folder(tmp_path).dataset_id == d.dataset_id
    rgb = load_image_folder(tmp_path, channels=3, size=8)
    assert rgb.images.shape == (5, 3, 8, 8)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist or is not a folder"):
        load_image_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="has no class sub-folders"):
        load_image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        load_image_folder(tmp_path)
    (tmp_path / "empty" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        load_image_folder(tmp_path)


def test_image_folder_mixed_sizes_and_limits(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a" / "1.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "a" / "2.png")
    with pytest.raises(DataError, match="pass a size to resize"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, size=3).images.shape == (2, 1, 3, 3)
    with pytest.raises(DataError, match="the limit is 1"):
        load_image_folder(tmp_path, size=3, max_images=1)


def test_image_folder_refuses_links_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(outside / "secret.png")
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").symlink_to(outside / "secret.png")
    with pytest.raises(DataError, match="points outside the chosen folder"):
        load_image_folder(root)


def _fake_cifar10(root, n_per_batch=4):
    root.mkdir()
    rng = np.random.default_rng(0)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as fh:
            data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
            pickle.dump({b"data": data, b"labels": list(range(n_per_batch))}, fh)
    return root


def test_cifar10_pickle_layout(tmp_path):
    root = _fake_cifar10(tmp_path / "cifar-10-batches-py")
    test = load_cifar(root)
    assert test.images.shape == (4, 3, 32, 32) and test.labels.tolist() == [0, 1, 2, 3]
    assert test.class_names[:2] == ("c0", "c1")
    raw = pickle.load(open(root / "test_batch", "rb"))[b"data"]
    # channel-major rows: the first 1024 bytes are the red plane
    np.testing.assert_allclose(test.images[1, 0].numpy().ravel(), raw[1, :1024] / 255.0, atol=1e-7)
    train = load_cifar(root, split="train")
    assert len(train) == 20
    assert len(load_cifar(root, split="train", max_images=6)) == 6


def test_cifar100_layout(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    with open(root / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)]}, fh)
    with open(root / "test", "wb") as fh:
        pickle.dump({"data": np.zeros((3, 3072), np.uint8), "fine_labels": [5, 99, 0]}, fh)
    d = load_cifar(root, variant=100)
    assert d.labels.tolist() == [5, 99, 0] and d.n_classes == 100


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/gbs_pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    root = _fake_cifar10(tmp_path / "c10")
    with open(root / "test_batch", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, fh)
    with pytest.raises(DataError, match="refusing to load posix.system|refusing to load os.system"):
        load_cifar(root)


def test_cifar_errors_name_path_and_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_cifar(tmp_path / "none")
    root = tmp_path / "c"
    root.mkdir()
    (root / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"lacks batches.meta, test_batch for CIFAR-10; give .*cifar-10-batches-py") as err:
        load_cifar(root)
    assert "readme" not in str(err.value)  # a served app must not list a visitor the folder's contents
    root = _fake_cifar10(tmp_path / "c2")
    (root / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="is not a readable CIFAR pickle"):
        load_cifar(root)
    with open(root / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(DataError, match=r"expected \(n, 3072\)"):
        load_cifar(root)
    with pytest.raises(ValueError, match="variant must be 10 or 100"):
        load_cifar(root, variant=20)
