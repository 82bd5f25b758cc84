"""Make ``import torchvision`` work next to a CPU-only torch.

The torchvision wheel on PyPI is a CUDA build. Beside the CPU build of torch its compiled extension fails to load
silently, and ``import torchvision`` then dies with ``operator torchvision::nms does not exist`` because its meta
registrations assume the op is there. Before the first import we try to load the real extension; only when that
fails do we declare the two op schemas torchvision's import needs, backed by a small pure-torch CPU NMS. Models,
feature extraction and transforms work after that; detection ops and ``torchvision.io`` decoding do not.
"""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path

import torch

__all__ = ["import_torchvision", "declare_missing_ops"]

_LIBRARY: torch.library.Library | None = None  # kept alive: dropping it unregisters the ops


def _nms_cpu(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    order = torch.argsort(scores, descending=True)
    keep: list[int] = []
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    for idx in order.tolist():
        if suppressed[idx]:
            continue
        keep.append(idx)
        w = (torch.minimum(x2[idx], x2) - torch.maximum(x1[idx], x1)).clamp(min=0)
        h = (torch.minimum(y2[idx], y2) - torch.maximum(y1[idx], y1)).clamp(min=0)
        inter = w * h
        iou = inter / (areas[idx] + areas - inter).clamp(min=1e-12)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def _qnms_cpu(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    return _nms_cpu(dets.dequantize(), scores.dequantize(), iou_threshold)


def _extension_loads() -> bool:
    spec = importlib.machinery.PathFinder.find_spec("torchvision")  # not through sys.meta_path: the hook is there
    if spec is None or spec.origin is None:
        return False
    for lib in Path(spec.origin).parent.glob("_C*.so"):
        try:
            torch.ops.load_library(str(lib))
            return True
        except (OSError, RuntimeError):
            return False
    return False


def declare_missing_ops() -> None:
    """Declare the two op schemas torchvision's import needs when its compiled extension cannot load (idempotent).

    The project's virtualenv runs this before any ``import torchvision`` through ``gbs_torchvision_hook`` (installed
    by ``scripts/setup.sh``), so a user's own script there imports torchvision (and timm) as usual."""
    global _LIBRARY
    if "torchvision" in sys.modules or _LIBRARY is not None:
        return
    if not _extension_loads():
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        lib.impl("nms", _nms_cpu, "CPU")
        lib.impl("qnms", _qnms_cpu, "QuantizedCPU")
        _LIBRARY = lib


def import_torchvision():
    """Import and return ``torchvision``, declaring the missing ops first when its compiled extension cannot load."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    declare_missing_ops()
    import torchvision

    return torchvision
