"""A disk cache of computed arrays, so each (weights, samples, layer, parameters) result is computed once.

Entries are numpy ``.npz`` files (no pickle: ``allow_pickle=False``) named by the sha256 of a canonical JSON of the key
and :data:`CODE_VERSION`. Each file holds the result's arrays plus a ``__meta__`` entry with JSON-able metadata and a
``__checksum__`` of the arrays' bytes. Writes go to a temporary file in the same folder and are renamed into place, so
a crash never leaves a half-written entry under a real name; a truncated or corrupt entry (bad zip, bad checksum) is
detected on read, deleted, and recomputed. A hit refreshes the file's modification time; when the folder grows past
``max_bytes``, the least recently used entries are evicted.

The default folder is ``$GBS_CACHE_DIR``, else ``$XDG_CACHE_HOME/gbs-explorer``, else ``~/.cache/gbs-explorer``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CODE_VERSION", "DiskCache", "CacheStats", "default_cache_dir", "cache_key"]

# Bump when a computation's meaning changes, so old entries are not reused.
CODE_VERSION = "1"
_META = "__meta__"
_CHECKSUM = "__checksum__"


def default_cache_dir() -> Path:
    if os.environ.get("GBS_CACHE_DIR"):
        return Path(os.environ["GBS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gbs-explorer"


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj != obj:
        return "nan"
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cache keys hold str, numbers, bools, None, lists and dicts; got {type(obj).__name__}")


def cache_key(key: Mapping[str, Any]) -> str:
    """The hex digest naming an entry: sha256 of the canonical JSON of ``key`` plus the code version."""
    payload = json.dumps({"code_version": CODE_VERSION, "key": _canonical(key)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    evicted: int = 0


class DiskCache:
    """Content-keyed store of named numpy arrays with JSON metadata.

    Parameters
    ----------
    root : path, optional
        Folder of the cache (created if missing); default :func:`default_cache_dir`.
    max_bytes : int
        Size limit of the folder; least recently used entries are evicted past it. Default 2 GiB.

    Examples
    --------
    >>> cache = DiskCache(tmp_path)                                      # doctest: +SKIP
    >>> arrays, meta = cache.get_or_compute({"layer": "stem"}, lambda: ({"x": np.ones(3)}, {"n": 3}))  # doctest: +SKIP
    """

    def __init__(self, root: str | Path | None = None, *, max_bytes: int = 2 * 1024**3):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.stats = CacheStats()
        self._lock = threading.Lock()

    def path_for(self, key: Mapping[str, Any]) -> Path:
        digest = cache_key(key)
        return self.root / digest[:2] / f"{digest}.npz"

    def get(self, key: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict] | None:
        """The stored ``(arrays, meta)`` for ``key``, or None when absent or corrupt (a corrupt file is deleted)."""
        path = self.path_for(key)
        if not path.is_file():
            self.stats.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(bytes(arrays.pop(_META)).decode())
            stored = str(arrays.pop(_CHECKSUM))
            if stored != _checksum(arrays):
                raise ValueError("checksum mismatch")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError):
            self.stats.corrupt += 1
            self.stats.misses += 1
            path.unlink(missing_ok=True)
            return None
        self.stats.hits += 1
        try:
            os.utime(path)  # mark as recently used
        except OSError:
            pass
        return arrays, meta

    def put(self, key: Mapping[str, Any], arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> Path:
        """Store ``arrays`` and ``meta`` under ``key``, atomically; then evict if over the size limit."""
        for name in arrays:
            if name in (_META, _CHECKSUM):
                raise ValueError(f"array name {name!r} is reserved by the cache")
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {k: np.asarray(v) for k, v in arrays.items()}
        if any(a.dtype == object for a in payload.values()):
            raise TypeError("the cache stores numeric and string arrays only, not Python objects")
        meta_bytes = json.dumps(_canonical(dict(meta or {}))).encode()
        payload[_CHECKSUM] = np.array(_checksum(payload))
        payload[_META] = np.frombuffer(meta_bytes, dtype=np.uint8)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.evict()
        return path

    def get_or_compute(
        self,
        key: Mapping[str, Any],
        compute: Callable[[], tuple[Mapping[str, np.ndarray], Mapping[str, Any]] | Mapping[str, np.ndarray]],
    ) -> tuple[dict[str, np.ndarray], dict]:
        """The cached result for ``key``, or ``compute()``'s result after storing it.

        ``compute`` returns either a mapping of arrays or a pair ``(arrays, meta)``.
        """
        hit = self.get(key)
        if hit is not None:
            return hit
        result = compute()
        arrays, meta = result if isinstance(result, tuple) else (result, {})
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.put(key, arrays, meta)
        return arrays, json.loads(json.dumps(_canonical(dict(meta))))

    def entries(self) -> list[Path]:
        return [p for p in self.root.glob("*/*.npz") if not p.name.startswith(".tmp-")]

    def size_bytes(self) -> int:
        total = 0
        for p in self.entries():
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def evict(self) -> int:
        """Delete least recently used entries until the folder is within ``max_bytes``; returns how many."""
        with self._lock:
            files = []
            for p in self.entries():
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                files.append((st.st_mtime, st.st_size, p))
            total = sum(size for _, size, _ in files)
            removed = 0
            for _, size, p in sorted(files, key=lambda f: f[0]):
                if total <= self.max_bytes:
                    break
                p.unlink(missing_ok=True)
                total -= size
                removed += 1
            self.stats.evicted += removed
            return removed

    def clear(self) -> None:
        for p in self.entries():
            p.unlink(missing_ok=True)
