"""The active dask.distributed cluster: :func:`cluster` and :func:`active_client`.

Inside ``with cluster(...)`` every :func:`~latentscope.stream.run_pass`,
:func:`~latentscope.stream.run_reducers` and the neighbour scans of
:mod:`latentscope.neighbors` run as tasks on that cluster (see
:mod:`latentscope.stream._dask`). The active client is held in a
:class:`contextvars.ContextVar`, so nested blocks and threads started with a copied
context see the right one. dask and distributed are imported only when a cluster is
asked for (the optional ``dask`` extra).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["cluster", "active_client", "distributed_module", "CONNECT_TIMEOUT_S"]

#: Seconds :func:`cluster` waits for a scheduler before giving up.
CONNECT_TIMEOUT_S = 5.0

_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("latentscope_active_client", default=None)

_EXTRA = "pip install 'latentscope-ae[dask]'"


def distributed_module(owner: str = "cluster") -> Any:
    """Import and return :mod:`distributed`, with a one-line error naming the extra when it is missing."""
    try:
        import dask  # noqa: F401, PLC0415 - optional extra
        import dask.array  # noqa: F401, PLC0415
        import distributed  # noqa: PLC0415
    except ImportError as exc:
        raise InvalidParameterError(
            f"{owner}: running on a cluster needs dask and distributed; install them with {_EXTRA}."
        ) from exc
    return distributed


def active_client() -> Any:
    """The :class:`distributed.Client` of the innermost active :func:`cluster` block, or None.

    Returns
    -------
    distributed.Client or None

    Examples
    --------
    >>> active_client() is None
    True
    """
    return _ACTIVE.get()


def _check_workers(workers: Any) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InvalidParameterError(
            f"cluster: workers must be an integer >= 1 (local worker processes); got {workers!r}.")
    return int(workers)


def _probe(address: str) -> None:
    """A one-line error for a TCP scheduler address that does not answer, before a client is made for it.

    (A ``distributed.Client`` that failed to connect complains again when it is
    garbage-collected; probing the port first keeps the error to one line.)
    """
    import socket  # noqa: PLC0415

    scheme = address.split("://", 1)[0] if "://" in address else "tcp"
    if scheme not in ("tcp", "tls", "ucx", "ws", "wss", "inproc"):
        raise InvalidParameterError(
            f"cluster: scheduler must be an address such as tcp://HOST:PORT; got {address!r} (unknown scheme {scheme!r}).")
    if scheme not in ("tcp", "tls"):
        return  # other transports: left to distributed
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return  # distributed explains a malformed address
    host = host.strip("[]")
    try:
        socket.getaddrinfo(host, int(port))
    except OSError as exc:
        raise InvalidParameterError(
            f"cluster: cannot reach the dask scheduler at {address} (the host {host!r} does not resolve).") from exc
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        why = f"no answer within {CONNECT_TIMEOUT_S:g} s" if isinstance(exc, TimeoutError) else (
            exc.strerror or type(exc).__name__).lower()
        raise InvalidParameterError(f"cluster: cannot reach the dask scheduler at {address} ({why}).") from exc


def _connect(distributed: Any, scheduler: str) -> Any:
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise InvalidParameterError(
            f"cluster: scheduler must be a scheduler address such as 'tcp://127.0.0.1:8786'; got {scheduler!r}."
        )
    address = scheduler.strip()
    _probe(address)
    try:
        return distributed.Client(address, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
    except Exception as exc:  # noqa: BLE001 - distributed raises OSError, TimeoutError, ValueError, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        why = f"no answer within {CONNECT_TIMEOUT_S:g} s" if "timed out" in reason.lower() else reason[:160]
        raise InvalidParameterError(f"cluster: cannot reach the dask scheduler at {address} ({why}).") from exc


#: distributed's nanny sets MALLOC_TRIM_THRESHOLD_ in every worker; that turns off glibc's
#: dynamic mmap threshold, so every numpy temporary of 128 KiB or more is a fresh mmap (3-4x
#: slower decoding and block arithmetic, measured). The local cluster unsets it.
_WORKER_ENV = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def _local(distributed: Any, workers: int) -> tuple[Any, Any]:
    import dask  # noqa: PLC0415 - optional extra

    with dask.config.set(_WORKER_ENV):
        lc = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=":0", silence_logs=40)
    try:
        return lc, distributed.Client(lc, set_as_default=False)
    except BaseException:
        lc.close()
        raise


@contextmanager
def cluster(scheduler: str | None = None, workers: int | None = None, client: Any = None) -> Iterator[Any]:
    """Run every pass inside the block on a dask.distributed cluster.

    Give at most one of the three: a scheduler address, a number of local worker
    processes, or a client you made. With none, nothing changes (the block yields
    None and passes run in this process).

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:port``); the client connects
        (within :data:`CONNECT_TIMEOUT_S` seconds) and disconnects on exit.
    workers : int, optional
        Start a ``distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
        processes=True)`` and close it on exit.
    client : distributed.Client, optional
        Use this client (left open on exit).

    Yields
    ------
    distributed.Client or None

    Raises
    ------
    InvalidParameterError
        Two of the three given, ``workers < 1``, an unreachable scheduler, or dask /
        distributed not installed.

    Examples
    --------
    >>> with cluster() as c:
    ...     c is None
    True
    """
    given = [name for name, v in (("scheduler", scheduler), ("workers", workers), ("client", client)) if v is not None]
    if len(given) > 1:
        raise InvalidParameterError(
            f"cluster: give one of scheduler, workers or client, not several; got {' and '.join(given)}."
        )
    if not given:
        yield None
        return
    if workers is not None:
        workers = _check_workers(workers)
    distributed = distributed_module()
    owned: list[Any] = []
    if client is not None:
        if not isinstance(client, distributed.Client):
            raise InvalidParameterError(f"cluster: client must be a distributed.Client; got {type(client).__name__}.")
        c = client
    elif scheduler is not None:
        c = _connect(distributed, scheduler)
        owned.append(c)
    else:
        lc, c = _local(distributed, workers)
        owned += [c, lc]
    token = _ACTIVE.set(c)
    try:
        yield c
    finally:
        _ACTIVE.reset(token)
        for obj in owned:
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - closing a dead connection must not hide the real error
                pass
