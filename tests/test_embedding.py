"""Tests of embed_2d: exact PCA coordinates, invariances, seeded UMAP."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from gbs_core.embedding import embed_2d


def test_pca_hand_example():
    # Centred points (-2,0), (0,0), (2,0): first axis x with positive loading; the second has zero variance.
    coords = embed_2d(np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]]), method="pca")
    np.testing.assert_allclose(coords, [[-2, 0], [0, 0], [2, 0]], atol=1e-12)


def test_pca_two_axes_and_one_feature():
    # Points on a rectangle 4 wide and 2 tall: first axis x (variance 4), second axis y (variance 1).
    X = np.array([[0, 0], [4, 0], [0, 2], [4, 2]], float)
    np.testing.assert_allclose(embed_2d(X, method="pca"), [[-2, -1], [2, -1], [-2, 1], [2, 1]], atol=1e-12)
    np.testing.assert_allclose(embed_2d(np.array([[1.0], [3.0]]), method="pca"), [[-1, 0], [1, 0]], atol=1e-12)


def test_pca_matches_numpy_up_to_sign_and_is_rotation_invariant():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 5)) * [5, 3, 1, 0.5, 0.1]
    got = embed_2d(X, method="pca")
    Xc = X - X.mean(0)
    w, V = np.linalg.eigh(Xc.T @ Xc)
    ref = Xc @ V[:, ::-1][:, :2]
    np.testing.assert_allclose(np.abs(got), np.abs(ref), atol=1e-10)
    Q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    np.testing.assert_allclose(np.abs(embed_2d(X @ Q + 3, method="pca")), np.abs(got), atol=1e-10)
    np.testing.assert_allclose(embed_2d(torch.from_numpy(X), method="pca"), got, atol=1e-12)


@pytest.mark.slow
def test_umap_is_seeded_and_separates_clusters():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 30)
    X = rng.normal(size=(60, 8)) + 8 * y[:, None]
    a = embed_2d(X, seed=3, n_neighbors=10)
    b = embed_2d(X, seed=3, n_neighbors=10)
    assert a.shape == (60, 2) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    gap = np.linalg.norm(a[y == 0].mean(0) - a[y == 1].mean(0))
    spread = max(a[y == 0].std(0).max(), a[y == 1].std(0).max())
    assert gap > 3 * spread
    assert embed_2d(X[:5], seed=0).shape == (5, 2)  # n_neighbors capped at N - 1


def test_import_is_lazy():
    code = "import sys, gbs_core.embedding, gbs_core.metrics, gbs_core.graphs; print('umap' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_errors():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="method='tsne' is not one of 'umap', 'pca'"):
        embed_2d(X, method="tsne")
    with pytest.raises(ValueError, match="seed must be an integer"):
        embed_2d(X, seed=1.5)
    with pytest.raises(ValueError, match="X has 3 samples; UMAP needs at least 4"):
        embed_2d(X[:3])  # scipy's spectral start would fail with a TypeError after the numba compilation
    with pytest.raises(ValueError, match="X has 1 samples; PCA needs at least 2"):
        embed_2d(X[:1], method="pca")
    with pytest.raises(ValueError, match="n_neighbors must be an integer >= 2"):
        embed_2d(X, n_neighbors=1)


def test_umap_compiles_once_per_machine_and_gives_the_same_embedding(tmp_path):
    """umap-learn's numba functions go to numba's disk cache: a second fresh process finds them there (the cache
    folder fills on the first run and holds umap-learn's entries) and embeds exactly as an uncached process does."""
    import os

    code = ("import numpy as np; from gbs_core.embedding import embed_2d; "
            "X = np.random.default_rng(1).normal(size=(60, 8)).astype('float32'); "
            "np.save(sys.argv[1], embed_2d(X, method='umap', seed=3))")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    for i in range(2):
        subprocess.run([sys.executable, "-c", "import sys; " + code, str(tmp_path / f"xy{i}.npy")], env=env,
                       check=True, timeout=600)
    assert any(p.name.startswith("umap") for p in (tmp_path / "numba").iterdir())
    assert len(list((tmp_path / "numba").rglob("*.nbi"))) > 20  # many functions cached, not one or two
    first, second = np.load(tmp_path / "xy0.npy"), np.load(tmp_path / "xy1.npy")
    X = np.random.default_rng(1).normal(size=(60, 8)).astype("float32")
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, embed_2d(X, method="umap", seed=3), atol=1e-5)
