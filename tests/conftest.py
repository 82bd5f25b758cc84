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
os.environ.setdefault("GBS_BACKGROUND", "0")  # no background preparation in tests (test_background.py runs it)
os.environ.setdefault("OMP_NUM_THREADS", "2")


import pytest  # noqa: E402


@pytest.fixture()
def run(tmp_path):
    """``run(*args, ok=True)``: ``python -m gbs_core ARGS`` through click's CliRunner with a throw-away cache; with
    ``ok`` it must succeed, without it it must fail cleanly (no traceback)."""
    from click.testing import CliRunner

    from gbs_core.cli import main

    runner = CliRunner()

    def _run(*args: str, ok: bool = True):
        result = runner.invoke(main, ["--cache-dir", str(tmp_path / "cache"), *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0 and "Traceback" not in result.output
        return result

    return _run


@pytest.fixture(scope="module")
def module_disk_cache(tmp_path_factory):
    """A disk cache of its own for one test module (set through GBS_CACHE_DIR, restored afterwards)."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("gbs_cache")
    mp.setenv("GBS_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def byo(tmp_path_factory):
    """A researcher's own material, made here by the libraries that make it in real life: a torchvision resnet18
    state_dict with its 1000-class ImageNet head (``torch.save(resnet18().state_dict())``), a timm resnet10t saved as
    ``.safetensors`` and as ``.pth``, a whole pickled model (refused), an image folder of 3 classes x 12 RGB images of
    20x20 (fewer than the default N = 500), a CIFAR-10-style pickle folder (train 5 x 12, test 30 images) and an
    ``.npz`` of saved activations."""
    import pickle

    import numpy as np
    import timm
    import torch
    import torchvision
    from PIL import Image
    from safetensors.torch import save_file

    from gbs_core.activations import save_activations

    root = tmp_path_factory.mktemp("byo")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), root / "resnet18.pth")
    torch.manual_seed(1)
    tm = timm.create_model("resnet10t", pretrained=False)
    save_file(tm.state_dict(), str(root / "resnet10t.safetensors"))
    torch.save(tm.state_dict(), root / "resnet10t.pth")
    torch.save(torchvision.models.resnet18(num_classes=3), root / "whole_model.pt")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cats", "dogs", "fish"]):
        (root / "folder" / name).mkdir(parents=True)
        for i in range(12):
            a = rng.integers(0, 90, (20, 20, 3)).astype(np.uint8)
            a[..., c] += 120  # each class has its own dominant colour
            Image.fromarray(a).save(root / "folder" / name / f"{i}.png")
    cifar = root / "cifar"
    cifar.mkdir()
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()

    def batch(n):
        y = np.tile(np.arange(10), n // 10 + 1)[:n]
        return {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"labels": y.tolist()}

    for i in range(1, 6):
        with open(cifar / f"data_batch_{i}", "wb") as fh:
            pickle.dump(batch(12), fh)
    with open(cifar / "test_batch", "wb") as fh:
        pickle.dump(batch(30), fh)
    with open(cifar / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [n.encode() for n in names]}, fh)
    labels = np.repeat(np.arange(3), 10)
    save_activations(root / "acts.npz", {"a": rng.normal(size=(30, 6)) + labels[:, None],
                                         "b": rng.normal(size=(30, 4))}, labels, class_names=["x", "y", "z"])
    return root
