"""Where sweeps run: a ``concurrent.futures`` executor of local processes, or a Dask cluster.

``make_executor(None, workers)`` gives a ``ProcessPoolExecutor`` (one
worker per core by default; one worker runs in this process on a thread,
with no pickling). ``make_executor("tcp://host:8786", ...)`` connects to a
Dask distributed scheduler and returns its ``concurrent.futures`` view;
Dask is imported only then (the ``cluster`` extra). Use the executor as a
context manager so its processes, or the cluster connection, are released.
"""

import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from profiles.errors import ConfigurationError


def make_executor(scheduler: str | None = None, workers: int | None = None) -> Executor:
    """An executor for simulations: Dask at ``scheduler`` when given, else ``workers`` local processes."""
    if scheduler:
        return _dask_executor(scheduler)
    if workers is not None and workers < 1:
        raise ConfigurationError(f"--workers: must be at least 1, got {workers}")
    count = workers or os.cpu_count() or 1
    if count == 1:
        return ThreadPoolExecutor(max_workers=1)  # in-process: no start-up or pickling cost
    return ProcessPoolExecutor(max_workers=count)


class DaskExecutor(Executor):
    """A Dask client's executor that also closes the client on ``shutdown``."""

    def __init__(self, client: Any) -> None:  # a distributed.Client (an optional dependency)
        self._client = client
        self._executor = client.get_executor()

    def submit(self, fn: Callable, /, *args: object, **kwargs: object) -> Future:
        """Run ``fn(*args, **kwargs)`` on the cluster (``Executor`` interface)."""
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop submitting, then disconnect from the scheduler (the cluster keeps running)."""
        self._executor.shutdown(wait=wait)
        self._client.close()


def _dask_executor(scheduler: str) -> Executor:
    """Connect to the Dask scheduler at ``scheduler``; a clear error when Dask or the scheduler is missing."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise ConfigurationError(
            f"--scheduler {scheduler}: Dask is not installed; install the cluster extra: pip install 'vlmplan[cluster]'"
        ) from None
    try:
        client = Client(scheduler, timeout=10)
    except OSError as err:  # distributed raises OSError (TimeoutError) when nothing answers
        raise ConfigurationError(f"--scheduler {scheduler}: cannot connect to the Dask scheduler: {err}") from None
    return DaskExecutor(client)
