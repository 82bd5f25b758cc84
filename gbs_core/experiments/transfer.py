"""Transferability (GBS paper's claim that GBS measures how well a pretrained model transfers): rank source models for a
target task by training-free scores of their features, and compare with the truth of training on the target.

For each source model the features are the input of its last linear layer (the penultimate representation, the
classifier's input) on the target images. Scores, computed on the target's training images without training:

- ``gbs_label``: dense GBS between the features and the one-hot labels (the label graph links each pair of samples
  of one class with weight 1);
- ``same_class_fraction``: the same-class triangle fraction of the features' kNN graph (k = 5);
- ``modularity``: Q of the features' kNN graph (k = 3) with the classes as communities;
- ``linear_cka_label``: linear CKA between the features and the one-hot labels.

Truth, on the target's held-out images: ``probe_accuracy`` of a logistic-regression probe on the frozen features
(scikit-learn), and ``finetune_accuracy`` after a short fine-tune of the whole network with a fresh head for the
target's classes, started from the probe (linear probe, then fine-tune; the zoo's recipe; 0 epochs skips it). Kendall's tau between each score and each truth
over the sources is the finding. The floor: randomly initialised networks (the zoo's epoch-0 checkpoints).

References
----------
Chen et al., "Graph-Based Similarity of Deep Neural Networks", Neurocomputing 614 (2024) 128722.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from gbs_core.cache import DiskCache
from gbs_core.data import Dataset, stratified_split
from gbs_core.zoo.train import TrainConfig, evaluate, fit

__all__ = ["TRANSFER_SCORES", "TRUTHS", "TransferResult", "penultimate_features", "transfer_scores",
           "stratified_split", "run_transfer", "default_sources", "TRANSFER_VERSION", "DEFAULT_FINETUNE"]

TRANSFER_VERSION = "1"  # unchanged: heads for 2 or gappy classes were a crash, never a cached result
DEFAULT_FINETUNE = TrainConfig(epochs=2, lr=0.01)
Progress = Callable[[int, int, str], None]
TRANSFER_SCORES = {
    "gbs_label": "dense GBS to the label graph",
    "same_class_fraction": "same-class triangle fraction (k = 5)",
    "modularity": "modularity Q (k = 3)",
    "linear_cka_label": "linear CKA to the one-hot labels",
}
TRUTHS = {"probe_accuracy": "linear probe accuracy", "finetune_accuracy": "fine-tuned accuracy"}


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer, so it has no classifier input to probe")
    return linears[-1]


@torch.no_grad()
def penultimate_features(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The input of the model's last linear layer for ``images`` (eval mode), float32 (N, D)."""
    _, head = _last_linear(model)
    out: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, args, _o: out.append(args[0].detach().flatten(1)))
    was_training = model.training
    try:
        model.eval()
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size])
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(out).numpy().astype(np.float32)


def transfer_scores(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The four training-free scores of :data:`TRANSFER_SCORES` for one model's features on the target."""
    from gbs_core.graphs import knn_graph
    from gbs_core.metrics.cka import linear_cka
    from gbs_core.metrics.gbs import gbs_similarity
    from gbs_core.metrics.modularity import modularity
    from gbs_core.metrics.motifs import triangle_motifs

    labels = np.asarray(labels)
    onehot = np.eye(int(labels.max()) + 1, dtype=np.float32)[labels]
    motifs = triangle_motifs(knn_graph(features, 5), labels)
    total = sum(motifs)
    return {
        "gbs_label": float(gbs_similarity(features, onehot)),
        "same_class_fraction": motifs[0] / total if total else float("nan"),
        "modularity": float(modularity(knn_graph(features, 3), labels)),
        "linear_cka_label": float(linear_cka(features, onehot)),
    }


def _probe(train_x, train_y, test_x, test_y, n_classes: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Accuracy of a logistic-regression probe on standardised features, and the probe as a linear layer on the raw
    features with one row per target class (weight (n_classes, D), bias (n_classes,)), which starts the fine-tune.
    With two classes scikit-learn fits one row w: the head gets -w/2 and +w/2 (the same decision); a class absent
    from the training labels gets a row of zeros and a very low bias."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(train_x), train_y)
    acc = float(np.mean(clf.predict(scaler.transform(test_x)) == test_y))
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: one row for the positive class
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((n_classes, coef.shape[1]))
    bias = np.full(n_classes, -1e4)
    raw = coef / scaler.scale_  # the probe on raw features: (w / scale) x + (b - (w / scale) . mean)
    weight[clf.classes_] = raw
    bias[clf.classes_] = intercept - raw @ scaler.mean_
    return acc, weight.astype(np.float32), bias.astype(np.float32)


def _finetune(model: nn.Module, head_weight: np.ndarray, head_bias: np.ndarray, train: Dataset, test: Dataset,
              config: TrainConfig, device: str = "cpu") -> float:
    """Fine-tune a copy of ``model`` whose last linear layer is replaced by the probe (linear probe, then fine-tune:
    Kumar et al. 2022), on ``train``; its accuracy on ``test``."""
    net = copy.deepcopy(model)
    name, head = _last_linear(net)
    parent_name, _, attr = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    new = nn.Linear(head.in_features, len(head_bias))
    with torch.no_grad():
        new.weight.copy_(torch.from_numpy(head_weight))
        new.bias.copy_(torch.from_numpy(head_bias))
    setattr(parent, attr, new)
    for p in net.parameters():
        p.requires_grad_(True)
    fit(net, train, config, device=device)
    return evaluate(net, test, device=device)


@dataclass
class TransferResult:
    """One row per source model: its scores and its truths on the target; Kendall's tau per (score, truth)."""

    target: str
    sources: list[str]
    scores: dict[str, list[float]]
    truths: dict[str, list[float]]
    settings: dict = field(default_factory=dict)

    def table(self):
        import pandas as pd

        return pd.DataFrame({"source": self.sources, **self.scores, **self.truths})

    def correlations(self):
        """Kendall's tau (and p-value, N) between each score and each truth over the sources; best first."""
        import pandas as pd
        from scipy.stats import kendalltau

        rows = []
        for t, truth in self.truths.items():
            y = np.asarray(truth, dtype=np.float64)
            for s, score in self.scores.items():
                x = np.asarray(score, dtype=np.float64)
                ok = np.isfinite(x) & np.isfinite(y)
                res = kendalltau(x[ok], y[ok]) if ok.sum() >= 3 else None
                rows.append({"score": s, "label": TRANSFER_SCORES[s], "truth": t,
                             "tau": float(res.statistic) if res is not None else float("nan"),
                             "p": float(res.pvalue) if res is not None else float("nan"), "n": int(ok.sum())})
        return pd.DataFrame(rows).sort_values(["truth", "tau"], ascending=[True, False], ignore_index=True)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> TransferResult:
        return cls(d["target"], list(d["sources"]), {k: list(v) for k, v in d["scores"].items()},
                   {k: list(v) for k, v in d["truths"].items()}, dict(d.get("settings", {})))


def default_sources() -> list[str]:
    """The zoo's finished conv nets of both training data sets, and the random initialisations (epoch-0
    checkpoints) as the floor."""
    from gbs_core.zoo.registry import list_zoo

    names = [e.name for e in list_zoo() if e.arch in ("tiny10", "resnet20", "resnet56", "vgg11", "vgg16", "mlp8")
             and (not e.name.startswith("tiny10-s") or e.name.startswith(("tiny10-s0", "tiny10-s1")))]
    return names + [e.name for e in list_zoo(include_checkpoints=True) if e.checkpoint_of and e.epoch == 0]


def run_transfer(
    sources: Sequence,
    target_train: Dataset,
    target_test: Dataset,
    *,
    target_name: str = "target",
    score_samples: int = 500,
    finetune: TrainConfig | None = None,
    cache: DiskCache | None = None,
    progress: Progress | None = None,
    device: str = "cpu",
) -> TransferResult:
    """Scores and truths of every source (:class:`~gbs_core.pipeline.LoadedModel`) on the target.

    ``score_samples`` stratified training images give the scores; the probe trains on every training image; the
    fine-tune (default :data:`DEFAULT_FINETUNE`; 0 epochs skips it) trains a copy with a new head. Each source's row is cached
    under its weights, the target's ids and the settings. ``progress(done, total, message)`` moves per source.
    ``device``: where the fine-tune trains and is evaluated.
    """
    score_data = (target_train.subsample(score_samples, seed=0) if score_samples < len(target_train)
                  else target_train)
    finetune = finetune or DEFAULT_FINETUNE
    do_ft = finetune.epochs > 0
    scores: dict[str, list[float]] = {k: [] for k in TRANSFER_SCORES}
    truths: dict[str, list[float]] = {k: [] for k in TRUTHS if do_ft or k == "probe_accuracy"}
    for i, src in enumerate(sources):
        if progress is not None:
            progress(i, len(sources), f"{src.label}: scores, probe{', fine-tune' if do_ft else ''}")

        def compute(src=src):
            feats = penultimate_features(src.model, score_data.images)
            row = transfer_scores(feats, score_data.labels)
            acc, weight, bias = _probe(penultimate_features(src.model, target_train.images), target_train.labels,
                                       penultimate_features(src.model, target_test.images), target_test.labels,
                                       target_train.n_classes)
            row["probe_accuracy"] = acc
            if do_ft:
                row["finetune_accuracy"] = _finetune(src.model, weight, bias, target_train, target_test, finetune,
                                                     device=device)
            return {k: np.array(v) for k, v in row.items()}

        key = {"kind": "transfer", "version": TRANSFER_VERSION, "model": src.model_id, "train": target_train.dataset_id,
               "test": target_test.dataset_id, "score_data": score_data.dataset_id,
               "finetune": asdict(finetune) if do_ft else None}
        row = compute() if cache is None else cache.get_or_compute(key, compute)[0]
        for k in scores:
            scores[k].append(float(row[k]))
        for k in truths:
            truths[k].append(float(row[k]))
    if progress is not None:
        progress(len(sources), len(sources), "transferability done")
    settings = {"train": target_train.dataset_id, "test": target_test.dataset_id, "n_train": len(target_train),
                "n_test": len(target_test), "score_samples": len(score_data),
                "finetune": asdict(finetune) if do_ft else None}
    return TransferResult(target_name, [s.label for s in sources], scores, truths, settings)
