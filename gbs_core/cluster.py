"""Many models' work as Dask tasks: on this machine's processes or on a cluster, with the results in input order.

The batch jobs (``sanity-check``, ``dynamics``) spend their first phase on one independent piece of work per model:
extracting its layers' features. :func:`map_tasks` runs such a function over a list of items, serially or as one
``dask.distributed`` task per item (``Client.submit``, collected with ``as_completed``), and reports each finished
item through the project's ``progress(done, total, message)`` callbacks. :func:`dask_client` opens the client: a
``LocalCluster`` of worker processes on this machine (``"local"``) or a connection to a running ``dask scheduler``
(``"HOST:PORT"``); :func:`parse_scheduler` checks the text a user gives for it.

The client keeps the disk cache: workers return arrays and write nothing, so a cluster needs no shared cache folder
and a later serial run reads what the cluster computed.

Examples
--------
>>> with dask_client("local", workers=2) as client:          # doctest: +SKIP
...     squares = map_tasks(lambda x: x * x, [1, 2, 3], client=client)
>>> squares                                                  # doctest: +SKIP
[1, 4, 9]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["LOCAL", "DEFAULT_WORKERS", "CONNECT_TIMEOUT_S", "WAIT_FOR_WORKERS_S", "TaskError", "parse_scheduler",
           "dask_client", "map_tasks"]

LOCAL = "local"
DEFAULT_WORKERS = 2
CONNECT_TIMEOUT_S = 20  # to reach a remote scheduler
WAIT_FOR_WORKERS_S = 60  # a remote scheduler with no worker would leave every task waiting for ever

T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[int, int, str], None]


class TaskError(RuntimeError):
    """A task failed on a Dask worker; the message names the item, ``__cause__`` is the worker's exception.

    Attributes
    ----------
    name : str
        The item's name (a model's label).
    """

    def __init__(self, name: str, exc: BaseException):
        super().__init__(f"{name}: the task failed on a Dask worker ({type(exc).__name__}: {exc})")
        self.name = name


def parse_scheduler(text: str | None) -> str | None:
    """The scheduler a ``--scheduler`` value names: None (run serially), ``"local"``, or ``"tcp://HOST:PORT"``.

    Parameters
    ----------
    text : str or None
        None or empty: serial. ``"local"``: a cluster of worker processes on this machine. ``"HOST:PORT"`` (or
        ``"tcp://HOST:PORT"``, as ``dask scheduler`` prints it; an IPv6 host in brackets, ``[::1]:8786``): a running
        scheduler.

    Returns
    -------
    str or None

    Raises
    ------
    ValueError
        Anything else: no port, a port that is not an integer in 1..65535, no host, another protocol than tcp.

    Examples
    --------
    >>> parse_scheduler("10.0.0.5:8786")
    'tcp://10.0.0.5:8786'
    >>> parse_scheduler("local")
    'local'
    """
    if text is None or not text.strip():
        return None
    value = text.strip()
    if value.lower() == LOCAL:
        return LOCAL
    address = value
    protocol, sep, rest = value.partition("://")
    if sep:
        if protocol != "tcp":
            raise ValueError(f"scheduler {text!r}: protocol {protocol!r} is not supported; give HOST:PORT (plain tcp)")
        address = rest
    host, sep, port = address.rpartition(":")
    if not sep:
        raise ValueError(f"scheduler {text!r} has no port; write 'local' or HOST:PORT, e.g. 10.0.0.5:8786")
    if not host or host == "[]":
        raise ValueError(f"scheduler {text!r} has no host; write HOST:PORT, e.g. 10.0.0.5:8786")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"scheduler {text!r}: port {port!r} is not an integer in 1..65535")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"scheduler {text!r}: write an IPv6 host in brackets, e.g. [::1]:8786")
    return f"tcp://{host}:{int(port)}"


@contextmanager
def dask_client(scheduler: str, *, workers: int | None = None) -> Iterator[Client]:
    """A ``distributed.Client`` for ``scheduler`` (a :func:`parse_scheduler` value or text it accepts).

    ``"local"`` starts a ``LocalCluster`` of ``workers`` processes (default :data:`DEFAULT_WORKERS`) with one thread
    each, listening on 127.0.0.1 only, without Dask's web dashboard; it is closed on exit, also on error. A
    remote scheduler is connected to (and only disconnected from on exit) once at least one worker is there.

    Parameters
    ----------
    scheduler : str
    workers : int, optional
        Number of local worker processes; only for ``"local"`` (a remote scheduler has its own workers).

    Yields
    ------
    distributed.Client

    Raises
    ------
    ValueError
        A scheduler :func:`parse_scheduler` refuses, ``workers`` below 1, or ``workers`` with a remote scheduler.
    ConnectionError
        The remote scheduler cannot be reached within :data:`CONNECT_TIMEOUT_S` seconds, or has no worker after
        :data:`WAIT_FOR_WORKERS_S`.
    """
    from distributed import Client, LocalCluster

    address = parse_scheduler(scheduler)
    if address is None:
        raise ValueError("no scheduler given; write 'local' or HOST:PORT (without one, run serially)")
    if address == LOCAL:
        n = DEFAULT_WORKERS if workers is None else int(workers)
        if n < 1:
            raise ValueError(f"a local cluster needs at least 1 worker; got {n}")
        # no web dashboard; the scheduler's small HTTP status server on a free port, so two clusters never collide
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                          scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster, Client(cluster) as client:
            yield client
        return
    if workers is not None:
        raise ValueError(f"the number of workers sets the size of a local cluster; the scheduler at {address} has its "
                         "own workers (start more with `dask worker`)")
    try:
        client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except OSError as exc:
        raise ConnectionError(f"cannot reach the Dask scheduler at {address} ({exc}); start one there with "
                              "`dask scheduler` and check the address and the firewall") from exc
    with client:
        try:
            client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
        except TimeoutError as exc:
            raise ConnectionError(f"the Dask scheduler at {address} has no worker after {WAIT_FOR_WORKERS_S} s; start "
                                  f"one with `dask worker {address} --nthreads 1`") from exc
        yield client


def map_tasks(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    client: Client | None = None,
    progress: Progress | None = None,
    name: Callable[[T], str] = str,
) -> list[R]:
    """``[fn(item) for item in items]``: serially without a client, else as one Dask task per item.

    With a client, each item is submitted as it comes out of ``items`` (so a generator that loads models keeps the
    workers busy while it loads the next one) and the results are collected as the tasks finish, then returned in
    input order. ``fn`` and the items must be picklable (cloudpickle: a lambda or a closure is, an open file is not);
    the tasks are not pure, so equal items are all run.

    Parameters
    ----------
    fn : callable item -> result
    items : iterable of items
    client : distributed.Client, optional
        None: run ``fn`` on each item here, one after the other.
    progress : callable (done, total, message), optional
        Called after each item, in the order they finish: ``done`` of ``total``, and a message naming the item.
    name : callable item -> str
        The item's name in progress messages and errors (default ``str``).

    Returns
    -------
    list
        ``fn(item)`` for each item, in the order of ``items``.

    Raises
    ------
    TaskError
        With a client, a task raised on its worker (the tasks still running are cancelled). Serially, ``fn``'s own
        exception propagates unchanged.
    """
    if client is None:
        items = list(items)
        out = []
        for i, item in enumerate(items, start=1):
            out.append(fn(item))
            if progress is not None:
                progress(i, len(items), f"{name(item)} done ({i}/{len(items)})")
        return out

    from distributed import as_completed

    names: list[str] = []
    futures: dict[Any, int] = {}
    done = 0
    try:
        for item in items:  # an error while making the items (a model that does not load) cancels what was sent
            futures[client.submit(fn, item, pure=False)] = len(names)
            names.append(name(item))
        results: list[Any] = [None] * len(names)
        for future in as_completed(list(futures)):
            i = futures[future]
            try:
                results[i] = future.result()
            except Exception as exc:  # the worker's exception (or KilledWorker, CancelledError), re-raised here
                raise TaskError(names[i], exc) from exc
            future.release()
            done += 1
            if progress is not None:
                progress(done, len(names), f"{names[i]} done ({done}/{len(names)})")
    except BaseException:
        client.cancel(list(futures))
        raise
    return results
