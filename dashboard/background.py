"""Work ahead of the user: once a model's features exist, lay out every layer's sample graph and compute its 2-D
embedding in the background, through the disk cache, so the layer slider lands on prepared layers.

One worker thread per job (a feature set with its k, scatter method and seed), at the lowest CPU priority the system
gives a thread; a job is never started twice (a second request joins the running one), it is resumable (each layer's
result goes to the disk cache as it is made, so a restarted job skips what is done), it works outward from the layer
the user is looking at, and it stops as soon as no browser session that asked for it is connected, or when the job is
superseded (the user changed k, N or the model). It works only while no page is being drawn: before each step it
waits until no session's script is running, so the user's own requests never share the two cores with it. The
dashboard reads the prepared results through the same cached
calls as before, so a prepared layer is a disk read. Set ``GBS_BACKGROUND=0`` to turn it off (the tests do).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gbs_core import analysis
from gbs_core.cache import DiskCache
from gbs_core.graph_layout import MAX_NODES

__all__ = ["Job", "enabled", "prepare", "jobs", "stop_all"]


@dataclass
class Job:
    """One background preparation: its identity, progress and the sessions that want it."""

    key: str
    name: str
    layers: list[str]
    done: int = 0
    error: str = ""
    finished: bool = False
    sessions: set[str] = field(default_factory=set)  # browser sessions that asked for it
    groups: set[str] = field(default_factory=set)  # the views it serves; a job no view wants any more stops
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    current: str = ""

    @property
    def total(self) -> int:
        return len(self.layers)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def status(self) -> str:
        if self.error:
            return f"{self.name}: preparing layers stopped ({self.error})"
        if self.finished:
            return f"{self.name}: all {self.total} layers prepared"
        return f"{self.name}: preparing layers, {self.done} of {self.total}" + (
            f" ({self.current})" if self.current else "")


_JOBS: dict[str, Job] = {}
_LOCK = threading.Lock()


def enabled() -> bool:
    return os.environ.get("GBS_BACKGROUND", "1").lower() not in ("0", "false", "no", "off")


def jobs() -> list[Job]:
    with _LOCK:
        return list(_JOBS.values())


def stop_all() -> None:
    """Ask every job to stop and wait for them (tests, server shutdown)."""
    for job in jobs():
        job.stop.set()
    for job in jobs():
        if job.thread is not None:
            job.thread.join(timeout=60)


def _lowest_priority() -> None:
    try:  # Linux: a thread is a task with its own nice value
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


def _outward(layers: Sequence[str], start: str | None) -> list[str]:
    """``layers`` ordered by distance from ``start`` (the layer on screen), nearest first, deeper before shallower."""
    if start not in layers:
        return list(layers)
    i = list(layers).index(start)
    return sorted(layers, key=lambda name: (abs(list(layers).index(name) - i), list(layers).index(name) < i))


def _pages_running() -> bool:
    """Whether any browser session's script is running now (a page being drawn): the job then waits, so it never
    competes with what the user asked for (on a 2-core machine, a laying-out thread made every page's first visit up to
    twice as slow). False outside a Streamlit server."""
    try:
        from streamlit import runtime
        from streamlit.runtime.app_session import AppSessionState

        if not runtime.exists():
            return False
        sessions = runtime.get_instance()._session_mgr.list_active_sessions()
        return any(info.session._state == AppSessionState.APP_IS_RUNNING for info in sessions)
    except Exception:  # noqa: BLE001 - Streamlit's internals moved: do not wait
        return False


def _wait_idle(job: Job, busy: Callable[[], bool]) -> None:
    while busy() and not job.stop.is_set():
        time.sleep(0.05)


def _session_alive(sessions: set[str]) -> bool:
    if not sessions:
        return True  # started outside a browser session (tests, scripts): runs to the end unless stopped
    try:
        from streamlit import runtime

        if not runtime.exists():
            return True
        return any(runtime.get_instance().is_active_session(s) for s in sessions)
    except Exception:  # noqa: BLE001 - the runtime is gone: the server is shutting down
        return False


def _run(job: Job, fs: analysis.FeatureSet, cache: DiskCache, *, k: int, method: str, seed: int, max_nodes: int,
         alive: Callable[[set[str]], bool], busy: Callable[[], bool]) -> None:
    _lowest_priority()
    try:
        for layer in job.layers:
            _wait_idle(job, busy)
            if job.stop.is_set() or not alive(job.sessions):
                return
            job.current = layer
            analysis.layer_graph_layout(fs, layer, k=k, max_nodes=max_nodes, seed=seed, cache=cache)
            _wait_idle(job, busy)
            if job.stop.is_set():
                return
            analysis.layer_embedding(fs, layer, method=method, seed=seed, cache=cache)
            job.done += 1
        job.finished = True
    except Exception as exc:  # noqa: BLE001 - reported in the sidebar; the page computes the layer itself
        job.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        job.current = ""


def prepare(fs: analysis.FeatureSet, cache: DiskCache, *, k: int, method: str = "umap", seed: int = 0,
            max_nodes: int = MAX_NODES, start: str | None = None, session: str | None = None,
            group: str = "", alive: Callable[[set[str]], bool] = _session_alive,
            busy: Callable[[], bool] = _pages_running) -> Job:
    """Start (or join) the background job that prepares every layer of ``fs``; returns it.

    ``group`` names what the job serves (e.g. a session and a view): a new job of the same group stops the group's
    older, different job, so changing k or N does not leave stale work running. ``session`` is the browser session
    that asks; the job stops when none of its sessions is connected.
    """
    key = f"{fs.model_id}|{fs.dataset_id}|{fs.pool}|k={k}|{method}|seed={seed}|{max_nodes}"
    with _LOCK:
        if group:  # this view now wants this job only: an older job no other view wants is superseded
            for other in _JOBS.values():
                if other.key != key and group in other.groups:
                    other.groups.discard(group)
                    if not other.groups:
                        other.stop.set()
        job = _JOBS.get(key)
        if job is None or not (job.running or job.finished):  # new, or stopped before the end: (re)start
            job = Job(key, fs.name, _outward(fs.layers, start))
            job.thread = threading.Thread(
                target=_run, name=f"gbs-prepare-{fs.name}", daemon=True, args=(job, fs, cache),
                kwargs=dict(k=int(k), method=method, seed=int(seed), max_nodes=int(max_nodes), alive=alive,
                            busy=busy))
            _JOBS[key] = job
            start_it = True
        else:
            start_it = False
        if session:
            job.sessions.add(session)
        if group:
            job.groups.add(group)
        if start_it:
            job.thread.start()
        return job
