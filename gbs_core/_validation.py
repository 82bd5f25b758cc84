"""Input checks shared by every public function of the computing core.

Validation happens once, at the public boundary, here; private helpers trust what they receive.
Every check raises a ``ValueError`` that names the argument, the offending value and what would be accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__: list[str] = []  # private module: nothing is re-exported

ArrayLike = Any  # numpy array, torch tensor or anything np.asarray accepts


def resolve_device(device: str | torch.device | None, *arrays: ArrayLike) -> torch.device:
    """The device to compute on: ``device`` if given, else the first CUDA tensor's device, else the CPU."""
    if device is not None:
        return torch.device(device)
    for a in arrays:
        if isinstance(a, torch.Tensor) and a.device.type != "cpu":
            return a.device
    return torch.device("cpu")


def as_matrix(
    X: ArrayLike,
    name: str = "X",
    *,
    dtype: torch.dtype | None = torch.float64,
    device: torch.device | None = None,
    min_samples: int = 1,
    why: str = "",
) -> torch.Tensor:
    """Return ``X`` as a finite 2-D tensor ``(n_samples, n_features)`` of ``dtype`` on ``device``.

    Raises ``ValueError`` when ``X`` is not 2-D, has no features, fewer than ``min_samples`` rows, or a NaN/inf entry.
    ``why`` completes the message about too few samples (e.g. "debiased HSIC needs at least 4").
    ``dtype=None`` keeps float32/float64 input as it is and converts anything else to float64.
    """
    if isinstance(X, torch.Tensor):
        t = X.detach()
    else:
        arr = np.asarray(X)
        if arr.dtype == object or np.iscomplexobj(arr) or arr.dtype.kind in "USV":
            raise ValueError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
        if arr.dtype.kind in "biu":
            arr = arr.astype(np.float64)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise ValueError(f"{name} must be real; got dtype {t.dtype}")
    if t.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features); got shape {tuple(t.shape)}. "
            f"Flatten layer outputs with {name}.reshape(len({name}), -1)"
        )
    n, d = t.shape
    if d < 1:
        raise ValueError(f"{name} has no features (shape {tuple(t.shape)})")
    if n < min_samples:
        reason = why or f"at least {min_samples} are needed"
        raise ValueError(f"{name} has {n} samples; {reason}")
    if dtype is None:
        dtype = t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float64
    t = t.to(device=device if device is not None else t.device, dtype=dtype)
    if not _all_finite(t):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} has {bad} non-finite (NaN or inf) entries; clean or drop them first")
    return t


def _all_finite(t: torch.Tensor, elements: int = 2**24) -> bool:
    """``isfinite(t).all()`` over blocks of rows: a boolean mask of a whole wide layer (N x D bytes) is not made."""
    rows = max(1, elements // max(t.shape[1], 1))
    return all(bool(torch.isfinite(t[i:i + rows]).all()) for i in range(0, t.shape[0], rows))


def check_same_samples(**arrays: torch.Tensor | np.ndarray) -> int:
    """Check that all arrays have the same number of rows and return it."""
    counts = {k: int(v.shape[0]) for k, v in arrays.items()}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{k} has {c}" for k, c in counts.items())
        raise ValueError(f"inputs must have the same number of samples (rows): {detail}")
    return next(iter(counts.values()))


def check_k(k: int, n_samples: int, name: str = "k") -> int:
    """Check a neighbour count: an integer with 1 <= k < n_samples."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"{name} must be at least 1; got {k}")
    if k >= n_samples:
        raise ValueError(f"{name}={k} neighbours need more than {k} samples; got {n_samples} (kNN needs k < N)")
    return k


def check_labels(labels: ArrayLike, n_samples: int, name: str = "labels") -> np.ndarray:
    """Return labels as int64 codes 0..C-1 (in sorted order of the distinct labels), checking length and shape."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,); got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} entries but the data has {n_samples} samples")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    _, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64).reshape(-1)


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_choice(value: str, name: str, allowed: tuple[str, ...]) -> str:
    """Check a keyword option from a closed set; the error lists the allowed values."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(repr(a) for a in allowed)}")
    return value


def check_finite_number(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {value!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return v


def check_layers(features: Mapping[str, ArrayLike], name: str = "features") -> list[str]:
    """Check a mapping layer name -> array is non-empty and return its layer names in order."""
    if not isinstance(features, Mapping):
        raise ValueError(f"{name} must be a mapping layer name -> array (e.g. a dict); got {type(features).__name__}")
    if len(features) == 0:
        raise ValueError(f"{name} is empty; give at least one layer")
    return list(features.keys())
