"""Benchmark of the sample graph's layout (issue 10): gbs_core's ForceAtlas2 against networkx's, on the default
workspace's kNN graphs. Prints a markdown table.

Usage:  python bench/bench_layout.py [--layers stem,layer1.6,layer2.4,layer3.8] [--repeats 3] [--nodes 500]

The graphs are those the Sample graph page draws: the bundled default (digits in noise, test split, N = 500, seed 0),
the zoo's ResNet-56, the symmetrised cosine kNN graph with k = 3 of each chosen layer. Both layouts run 100 steps from
a seeded random start; "s" is the median of ``--repeats`` runs (min-max in brackets). Quality, computed the same way
for both (higher is better for the first and last, lower for the middle):
- class silhouette: sklearn's silhouette score of the true classes on the 2-D positions (classes drawn apart);
- edge / mean distance: the mean drawn length of the graph's edges over the mean distance between all pairs of
  nodes (neighbours drawn close, relative to the drawing's size);
- 10-NN kept: the fraction of edges i -> j with j among the 10 nodes drawn nearest to i.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _quality(A, xy, labels) -> tuple[float, float, float]:
    import numpy as np
    import scipy.sparse as sp
    from sklearn.metrics import silhouette_score

    coo = sp.coo_array(A)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    ratio = d[coo.row, coo.col].mean() / d[np.triu_indices(len(xy), 1)].mean()
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :10]
    kept = float(np.mean([c in nearest[r] for r, c in zip(coo.row, coo.col, strict=True)]))
    return float(silhouette_score(xy, labels)), float(ratio), kept


def _networkx_layout(A, seed: int):
    import networkx as nx
    import numpy as np

    pos = nx.forceatlas2_layout(nx.from_scipy_sparse_array(A), seed=seed, max_iter=100)
    return np.array([pos[i] for i in range(A.shape[0])])


def _timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="stem,layer1.6,layer2.4,layer3.8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=500, help="samples (the default workspace's N)")
    args = parser.parse_args()

    import torch

    from gbs_core.analysis import feature_set
    from gbs_core.data import load_bundled, stratified_subsample
    from gbs_core.graph_layout import force_layout
    from gbs_core.graphs import knn_graph
    from gbs_core.pipeline import ModelSpec, load_model

    data = stratified_subsample(load_bundled("digits-noise", "test"), args.nodes, seed=0)
    loaded = load_model(ModelSpec("zoo", "resnet56"), data_shape=data.input_shape, num_classes=data.n_classes)
    layers = args.layers.split(",")
    fs = feature_set(loaded, data, layers)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads); load average before: "
          f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"Graphs: resnet56 on digits-noise, N = {len(data)}, k = 3; 100 layout steps; median of {args.repeats}\n")
    print("| layer | layout | s (min-max) | class silhouette | edge / mean distance | 10-NN kept | load (1 min) |")
    print("|---|---|---|---|---|---|---|")
    for layer in layers:
        A = knn_graph(fs.features[layer], 3)
        for name, fn in (("gbs_core force_layout", lambda A=A: force_layout(A, seed=0)),
                         ("networkx forceatlas2_layout", lambda A=A: _networkx_layout(A, 0))):
            xy, times = _timed(fn, args.repeats)
            sil, ratio, kept = _quality(A, xy, data.labels)
            print(f"| {layer} | {name} | {statistics.median(times):.3f} ({min(times):.3f}-{max(times):.3f}) | "
                  f"{sil:.3f} | {ratio:.3f} | {kept:.3f} | {os.getloadavg()[0]:.2f} |")


if __name__ == "__main__":
    main()
