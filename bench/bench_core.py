"""Benchmark of the computing core (issue 3): kNN graph + modularity vs the modularity paper's pipeline, the matmul
floor, and the 20 x 20 layer similarity matrix vs pair by pair. Prints a markdown table.

Usage:  python bench/bench_core.py [--quick]

Every measurement runs in a fresh spawned process that first builds its synthetic data (10 Gaussian classes, float32),
then resets the peak-RSS counter (/proc/self/clear_refs), so "peak MB" is the extra resident memory of the operation.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_CLASSES = 10


def _clustered(n: int, d: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.arange(n) % N_CLASSES
    centers = rng.standard_normal((N_CLASSES, d), dtype=np.float32)
    X = rng.standard_normal((n, d), dtype=np.float32) * np.float32(1.5)
    X += centers[y]
    return X, y


def _layers(n: int, d: int, n_layers: int):
    """n_layers features of one model: progressively mixed versions of a clustered base, ReLU'd."""
    import numpy as np

    X, y = _clustered(n, d, 1)
    rng = np.random.default_rng(2)
    feats = {}
    for i in range(n_layers):
        X = np.maximum(X @ (rng.standard_normal((d, d), dtype=np.float32) / np.float32(np.sqrt(d))), 0) + 0.1 * X
        feats[f"layer{i:02d}"] = X.astype(np.float32)
    return feats, y


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reference_pipeline(X, y, k):
    """The modularity paper's pipeline: cosine matrix, per-row Python top-k, dense (D + D^T) / 2, networkx."""
    import networkx as nx
    import numpy as np

    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-8)
    S = Xn @ Xn.T
    n = len(X)
    D = np.zeros((n, n))
    for i in range(n):
        row = S[i].copy()
        row[i] = -np.inf
        idx = np.argsort(row)[-k:]
        D[i, idx] = row[idx]
    A = (D + D.T) / 2
    G = nx.from_numpy_array(A)
    comms = [set(np.flatnonzero(y == c).tolist()) for c in range(N_CLASSES)]
    return nx.algorithms.community.modularity(G, comms)


def _task(name: str, params: dict, queue) -> None:
    import numpy as np
    import torch

    from gbs_core.graphs import knn_graph
    from gbs_core.metrics import gbs_similarity, linear_cka, modularity, similarity_matrix

    if name in ("reference", "ours"):
        X, y = _clustered(params["n"], params["d"])
    elif name.startswith(("cka", "gbs")):
        feats, y = _layers(params["n"], params["d"], params["layers"])
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the VmHWM peak counter
    except OSError:
        pass
    base = _rss_kb("VmRSS")
    t0 = time.perf_counter()
    if name == "reference":
        value = _reference_pipeline(X, y, params["k"])
    elif name == "ours":
        value = modularity(knn_graph(X, params["k"]), y)
    elif name == "matmul":
        out = {}
        for dt in (torch.float32, torch.float64):
            a = torch.randn(params["b"], params["d"], dtype=dt)
            bmat = torch.randn(params["n"], params["d"], dtype=dt)
            best = float("inf")
            for _ in range(3):
                s = time.perf_counter()
                a @ bmat.T
                best = min(best, time.perf_counter() - s)
            out[str(dt)] = 2 * params["b"] * params["n"] * params["d"] / best
        value = out
    elif name in ("cka_matrix", "gbs_matrix"):
        value = similarity_matrix(feats, metric="linear_cka" if name == "cka_matrix" else "gbs_dense")
    elif name in ("cka_pairs", "gbs_pairs"):
        f = linear_cka if name == "cka_pairs" else gbs_similarity
        names = list(feats)
        M = np.eye(len(names))
        for i in range(len(names)):
            for j in range(i + 1, len(names)):  # each unordered pair once, computed independently
                M[i, j] = M[j, i] = f(feats[names[i]], feats[names[j]])
        value = M
    elapsed = time.perf_counter() - t0
    peak = max(_rss_kb("VmHWM") - base, 0) / 1024
    if isinstance(value, np.ndarray):
        value = value.tolist()
    queue.put((elapsed, peak, value))


def run(name: str, **params):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_task, args=(name, params, q))
    p.start()
    res = q.get()
    p.join()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    args = ap.parse_args()
    import numpy as np
    import torch

    sizes, d = ([500, 2500], 1024) if args.quick else ([500, 2500, 10000], 4096)
    sim_n, sim_d, sim_layers = (500, 256, 8) if args.quick else (2500, 1024, 20)
    print(f"# bench_core {'--quick' if args.quick else '(full)'}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    _, _, rates = run("matmul", b=2048, n=max(sizes), d=d)
    r32, r64 = rates["torch.float32"], rates["torch.float64"]
    print(f"matmul rate: float32 {r32 / 1e9:.0f} GFLOP/s, float64 {r64 / 1e9:.0f} GFLOP/s\n")

    print(f"## kNN graph (k=3) + modularity, D = {d}, {N_CLASSES} classes")
    print(
        "| N | reference s | ours s | speed-up | floor s (2N^2D @ f32) | ours / floor | ref peak MB | ours peak MB | Q ref | Q ours |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        t_ref, m_ref, q_ref = run("reference", n=n, d=d, k=3)
        t_our, m_our, q_our = run("ours", n=n, d=d, k=3)
        floor = 2 * n * n * d / r32
        print(
            f"| {n} | {t_ref:.2f} | {t_our:.2f} | {t_ref / t_our:.1f}x | {floor:.2f} | {t_our / floor:.2f}x "
            f"| {m_ref:.0f} | {m_our:.0f} | {q_ref:.6f} | {q_our:.6f} |"
        )

    print(f"\n## {sim_layers} x {sim_layers} layer similarity matrix, N = {sim_n}, D = {sim_d} per layer")
    print("| metric | matrix s | pair by pair s | speed-up | matrix peak MB | pairs peak MB | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for metric in ("cka", "gbs"):
        t_m, m_m, M = run(f"{metric}_matrix", n=sim_n, d=sim_d, layers=sim_layers)
        t_p, m_p, P = run(f"{metric}_pairs", n=sim_n, d=sim_d, layers=sim_layers)
        diff = float(np.max(np.abs(np.asarray(M) - np.asarray(P))))
        label = "linear CKA" if metric == "cka" else "GBS (dense)"
        print(f"| {label} | {t_m:.2f} | {t_p:.2f} | {t_p / t_m:.1f}x | {m_m:.0f} | {m_p:.0f} | {diff:.1e} |")
    print("\npair by pair = each of the L(L-1)/2 unordered pairs computed independently with the pair function.")


if __name__ == "__main__":
    main()
