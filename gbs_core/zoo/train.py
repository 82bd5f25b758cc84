"""Reproducible CPU training of the zoo models on the digits (also used to fine-tune pruned models).

Fixed seeds, deterministic algorithms, a fixed number of CPU threads (float sums depend on the thread split), SGD
with Nesterov momentum and a cosine learning-rate schedule, and a light augmentation: random shifts of up to two
pixels (zero padding). Evaluation is on the held-out digits split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gbs_core.data import Dataset

if TYPE_CHECKING:
    from gbs_core.zoo.registry import ZooEntry

__all__ = ["TrainConfig", "EpochLog", "fit", "evaluate", "count_parameters", "seed_everything", "train_zoo_model",
           "DEFAULT_EPOCHS", "DEFAULT_LR"]

TRAIN_THREADS = 2


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    lr: float = 0.05
    batch_size: int = 128
    weight_decay: float = 5e-4
    momentum: float = 0.9
    max_shift: int = 2
    seed: int = 0


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    loss: float
    train_accuracy: float
    seconds: float


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return torch.Generator().manual_seed(seed)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(-1, x.shape[1], h, w + 2 * max_shift)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None]).view(n, 1, 1, w).expand(-1, x.shape[1], h, w)
    return out.gather(3, cols)


def fit(
    model: nn.Module,
    train: Dataset,
    config: TrainConfig = TrainConfig(),
    *,
    device: str | torch.device = "cpu",
    progress: Callable[[EpochLog], None] | None = None,
) -> list[EpochLog]:
    """Train ``model`` in place on ``train``; returns one log record per epoch (also passed to ``progress``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        gen = seed_everything(config.seed)
        model.to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                              weight_decay=config.weight_decay)
        steps_per_epoch = -(-len(train) // config.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch)
        x_all, y_all = train.images, torch.from_numpy(train.labels)
        logs = []
        for epoch in range(1, config.epochs + 1):
            start = time.perf_counter()
            order = torch.randperm(len(train), generator=gen)
            total_loss, correct = 0.0, 0
            for i in range(0, len(train), config.batch_size):
                idx = order[i : i + config.batch_size]
                if len(idx) < 2:  # batch norm needs two samples
                    continue
                x = _random_shift(x_all[idx], config.max_shift, gen).to(device)
                y = y_all[idx].to(device)
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total_loss += loss.item() * len(idx)
                correct += (logits.argmax(1) == y).sum().item()
            log = EpochLog(epoch, total_loss / len(train), correct / len(train), time.perf_counter() - start)
            logs.append(log)
            if progress is not None:
                progress(log)
        return logs
    finally:
        model.eval()
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, *, batch_size: int = 512, device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on ``data``, in [0, 1]."""
    model.to(device).eval()
    correct = 0
    for i in range(0, len(data), batch_size):
        logits = model(data.images[i : i + batch_size].to(device))
        correct += (logits.argmax(1).cpu().numpy() == data.labels[i : i + batch_size]).sum()
    return float(correct) / len(data)


# Epochs per architecture for the committed zoo (chosen so every model clears 95% test accuracy on digits).
DEFAULT_EPOCHS = {"tiny10": 30, "resnet20": 30, "resnet56": 30, "vgg11": 30, "vgg16": 30, "mlp8": 40}
DEFAULT_LR = {"mlp8": 0.05}


def train_zoo_model(arch: str, seed: int, *, epochs: int, out: Path, lr: float = 0.05, name: str | None = None,
                    progress: Callable[[str], None] | None = None) -> ZooEntry:
    """Train one zoo architecture on the digits with ``seed``, save ``<name>.pt`` in ``out`` atomically, and record it
    (accuracy on the held-out split, parameter count, sha256) in ``out/manifest.json``."""
    from gbs_core.data import load_digits
    from gbs_core.zoo.registry import ZooEntry, build_model, file_sha256, write_manifest_entry

    name = name or arch
    if progress is None:
        def progress(line: str) -> None:
            print(line, flush=True)

    torch.manual_seed(seed)
    model = build_model(arch)
    cfg = TrainConfig(epochs=epochs, lr=lr, seed=seed)
    train, test = load_digits("train"), load_digits("test")

    def report(log):
        progress(f"  [{name}] epoch {log.epoch:3d}/{epochs}  loss {log.loss:.4f}  train acc {log.train_accuracy:.4f}"
                 f"  ({log.seconds:.1f} s)")

    fit(model, train, cfg, progress=report)
    acc = evaluate(model, test)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    entry = ZooEntry(name=name, arch=arch, seed=seed, epochs=epochs, optimizer="sgd-nesterov-cosine", lr=lr,
                     batch_size=cfg.batch_size, weight_decay=cfg.weight_decay, test_accuracy=acc,
                     n_params=count_parameters(model), sha256=file_sha256(path), file=path.name)
    write_manifest_entry(out, entry)
    progress(f"{name}: test accuracy {acc:.4f}, {entry.n_params} parameters -> {path}")
    return entry
