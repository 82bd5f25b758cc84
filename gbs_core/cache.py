"""A disk cache of computed arrays, so each (weights, samples, layer, parameters) result is computed once.

Entries are numpy ``.npz`` files (no pickle: ``allow_pickle=False``) named by the sha256 of a canonical JSON of the key
and :data:`CODE_VERSION`. Each file holds the result's arrays plus a ``__meta__`` entry with JSON-able metadata and a
``__checksum__`` of the arrays' bytes. Writes go to a temporary file in the same folder and are renamed into place, so
a crash never leaves a half-written entry under a real name; a truncated or corrupt entry (bad zip, bad checksum) is
detected on read, deleted, and recomputed; so is an entry whose stored key digest is not its own (a file copied over
another). A hit refreshes the file's modification time; when the folder grows past ``max_bytes``, the least recently
used entries are evicted. The size is kept in a running counter (one scan when the cache is opened, another only
when the counter passes the limit), temporary files of killed writers older than :data:`ORPHAN_SECONDS` are removed
(and counted until then), and an entry larger than the whole limit is not stored. A folder that cannot be created or
written gives one :class:`CacheWarning` naming ``GBS_CACHE_DIR`` and the cache then stores nothing (``disabled``).

The default folder is ``$GBS_CACHE_DIR``, else ``$XDG_CACHE_HOME/gbs-explorer``, else ``~/.cache/gbs-explorer``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CODE_VERSION", "DiskCache", "MemoryCache", "CacheStats", "CacheWarning", "default_cache_dir", "cache_key", "ORPHAN_SECONDS"]

# Bump when a computation's meaning changes, so old entries are not reused.
CODE_VERSION = "1"
_META = "__meta__"
_CHECKSUM = "__checksum__"
_KEY = "__key__"
ORPHAN_SECONDS = 300  # a temporary file this old belongs to a writer that died


class CacheWarning(UserWarning):
    """The disk cache cannot be used (the folder is not writable, the disk is full); results are not stored."""


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
    orphans_removed: int = 0
    too_large: int = 0


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
        self.max_bytes = int(max_bytes)
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self.disabled = False
        self.problem = ""
        self._size: int | None = None  # running total of the folder's bytes (None: not scanned yet)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.root, prefix=".tmp-probe-", delete=True)
            probe.close()
        except OSError as exc:
            self._disable(exc)

    def _disable(self, exc: BaseException) -> None:
        """Stop storing, with one warning that says what to change."""
        if self.disabled:
            return
        self.disabled = True
        self.problem = (f"the disk cache folder {self.root} cannot be used ({type(exc).__name__}: {exc}); results are "
                        "not stored. Set GBS_CACHE_DIR (or --cache-dir) to a writable folder.")
        warnings.warn(self.problem, CacheWarning, stacklevel=3)

    def path_for(self, key: Mapping[str, Any]) -> Path:
        digest = cache_key(key)
        return self.root / digest[:2] / f"{digest}.npz"

    def get(self, key: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict] | None:
        """The stored ``(arrays, meta)`` for ``key``, or None when absent or corrupt (a corrupt file is deleted)."""
        if self.disabled:
            self.stats.misses += 1
            return None
        path = self.path_for(key)
        if not path.is_file():
            self.stats.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(bytes(arrays.pop(_META)).decode())
            stored = str(arrays.pop(_CHECKSUM))
            own = str(arrays.pop(_KEY))
            if stored != _checksum(arrays) or own != path.stem:
                raise ValueError("checksum or key mismatch")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError):
            self.stats.corrupt += 1
            self.stats.misses += 1
            self._forget(path)
            return None
        self.stats.hits += 1
        try:
            os.utime(path)  # mark as recently used
        except OSError:
            pass
        return arrays, meta

    def _forget(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            return
        if self._size is not None:
            self._size -= size

    def put(self, key: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
            meta: Mapping[str, Any] | None = None) -> Path | None:
        """Store ``arrays`` and ``meta`` under ``key``, atomically; then evict if over the size limit. Returns the
        entry's path, or None when nothing was stored (the cache is disabled, or the entry alone is over the limit)."""
        for name in arrays:
            if name in (_META, _CHECKSUM, _KEY):
                raise ValueError(f"array name {name!r} is reserved by the cache")
        payload = {k: np.asarray(v) for k, v in arrays.items()}
        if any(a.dtype == object for a in payload.values()):
            raise TypeError("the cache stores numeric and string arrays only, not Python objects")
        if self.disabled:
            return None
        if sum(a.nbytes for a in payload.values()) > self.max_bytes:
            self.stats.too_large += 1  # storing it would evict everything, itself included
            return None
        path = self.path_for(key)
        meta_bytes = json.dumps(_canonical(dict(meta or {}))).encode()
        payload[_CHECKSUM] = np.array(_checksum(payload))
        payload[_KEY] = np.array(path.stem)
        payload[_META] = np.frombuffer(meta_bytes, dtype=np.uint8)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            old = path.stat().st_size if path.exists() else 0
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        except OSError as exc:
            self._disable(exc)
            return None
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:  # disk full, folder made read-only meanwhile: go on uncached
            Path(tmp).unlink(missing_ok=True)
            self._disable(exc)
            return None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock:
            if self._size is not None:
                self._size += path.stat().st_size - old
        if self._size is None or self._size > self.max_bytes:
            self.evict(keep=path)
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

    def _scan(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every entry; temporary files older than ORPHAN_SECONDS are deleted on the way,
        younger ones (a writer at work) are counted in the size but never evicted."""
        files, now, temp_bytes = [], time.time(), 0
        for p in self.root.glob("*/*"):
            try:
                st = p.stat()
            except OSError:
                continue
            if p.name.startswith(".tmp-"):
                if now - st.st_mtime > ORPHAN_SECONDS:
                    p.unlink(missing_ok=True)
                    self.stats.orphans_removed += 1
                else:
                    temp_bytes += st.st_size
            elif p.suffix == ".npz":
                files.append((st.st_mtime, st.st_size, p))
        self._size = sum(size for _, size, _ in files) + temp_bytes
        return files

    def size_bytes(self) -> int:
        """Bytes of the folder's entries and young temporary files (a fresh scan)."""
        with self._lock:
            self._scan()
            return int(self._size or 0)

    def evict(self, keep: Path | None = None) -> int:
        """Delete least recently used entries until the folder is within ``max_bytes`` (never ``keep``, the entry
        just written); returns how many."""
        if self.disabled:
            return 0
        with self._lock:
            files = self._scan()
            removed = 0
            for _, size, p in sorted(files, key=lambda f: f[0]):
                if self._size <= self.max_bytes:
                    break
                if p == keep:
                    continue
                p.unlink(missing_ok=True)
                self._size -= size
                removed += 1
            self.stats.evicted += removed
            return removed

    def clear(self) -> None:
        for p in self.entries():
            p.unlink(missing_ok=True)
        self._size = None


class MemoryCache:
    """A stand-in for :class:`DiskCache` that keeps what is put in memory: a Dask task computes through it (its
    results, and what they are computed from, under the disk cache's keys) and returns it to the client, which writes
    it into its own disk cache (:meth:`write_into`). Nothing touches a disk on the worker.

    ``max_bytes`` only decides what callers choose to store (e.g. features over half of it are not); nothing is evicted.
    """

    def __init__(self, *, max_bytes: int = 2 * 1024**3):
        self.max_bytes = int(max_bytes)
        self.stats = CacheStats()
        self.disabled = False
        self.problem = ""
        self._entries: dict[str, tuple[dict, dict[str, np.ndarray], dict]] = {}

    def get(self, key: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict] | None:
        hit = self._entries.get(cache_key(key))
        if hit is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return dict(hit[1]), dict(hit[2])

    def put(self, key: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
            meta: Mapping[str, Any] | None = None) -> None:
        payload = {k: np.asarray(v) for k, v in arrays.items()}
        self._entries[cache_key(key)] = (dict(key), payload, json.loads(json.dumps(_canonical(dict(meta or {})))))

    def get_or_compute(self, key, compute):
        hit = self.get(key)
        if hit is not None:
            return hit
        result = compute()
        arrays, meta = result if isinstance(result, tuple) else (result, {})
        self.put(key, arrays, meta)
        return self.get(key)

    def __len__(self) -> int:
        return len(self._entries)

    def write_into(self, cache: DiskCache | None) -> int:
        """Put every entry into ``cache`` (nothing when None); returns how many."""
        if cache is None:
            return 0
        for key, arrays, meta in self._entries.values():
            cache.put(key, arrays, meta)
        return len(self._entries)
