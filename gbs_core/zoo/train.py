"""Reproducible CPU training of the zoo models on the digits (also used to fine-tune pruned models).

Fixed seeds, deterministic algorithms, a fixed number of CPU threads (float sums depend on the thread split), SGD
with Nesterov momentum and a cosine learning-rate schedule, and a light augmentation: random shifts of up to two
pixels (zero padding). Evaluation is on the held-out digits split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gbs_core.data import Dataset

__all__ = ["TrainConfig", "EpochLog", "fit", "evaluate", "count_parameters", "seed_everything"]

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
