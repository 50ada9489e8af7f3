"""Where an experiment's runs train.

- ``local`` (the default, no extra dependency): this machine; in this process for one job, else in a
  pool of `jobs` spawned worker processes.
- ``ray``: one plain Ray task per run, asking for as many CPUs as the run has threads, on a Ray instance
  started for the sweep on this machine or on an existing cluster (``address="auto"`` or
  ``"HOST:PORT"``); needs the ``ray`` extra. Each run writes its own folder on the node that trains it
  and Ray copies no files anywhere, so on a cluster of several machines the output folder must be shared
  storage mounted at the same path on every node.

Both backends train a run with :func:`~rbp_native.experiments.runner.execute`, so they write the same
files and a sweep started on one can be resumed on the other. They report each run as it finishes
through ``finished(run, result, error)``: `result` is execute's summary, or `error` is the text
``"Type: message"`` of the exception the run raised (the run failed; the sweep goes on). A diverged run
is a finished run (``result["status"] == "diverged"``), not an error, on both.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Optional

from .config import Run
from .runner import HISTORY_CSV, execute

BACKENDS = ("local", "ray")
RAY_RETRIES = 3
"""Times Ray starts a run again after its worker died (killed process, lost node, out of memory)."""

Task = tuple[Run, dict[str, Any]]
Finished = Callable[[Run, Optional[dict[str, Any]], Optional[str]], Any]
Status = Optional[Callable[[str], Any]]


class RayNotInstalled(ImportError, ValueError):
    """``backend="ray"`` without Ray installed (a ValueError too: the option cannot be honoured)."""


class RayUnreachable(ConnectionError, ValueError):
    """No Ray cluster answers at the address given (a ValueError too: the option cannot be honoured)."""


def describe(error: BaseException) -> str:
    """How a failed run's error is recorded and shown."""
    return f"{type(error).__name__}: {error}"


def check(backend: str, address: str | None, jobs: int) -> None:
    """Raise ValueError for options the chosen backend cannot honour (RayNotInstalled without Ray)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "local":
        if address is not None:
            raise ValueError("address applies to the ray backend only (--backend ray)")
        return
    if jobs != 1:
        raise ValueError(
            "jobs applies to the local backend only: on Ray the cluster's free CPUs decide how many "
            "runs train at once, and threads sets the CPUs of each run"
        )
    import_ray()


def import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise RayNotInstalled(
            f"the ray backend needs Ray, which cannot be imported here ({error}); install it with "
            "pip install 'rbp-native[ray]' (in a source checkout: pip install '.[ray]')"
        ) from error
    return ray


# ----------------------------------------------------------------------------------------------
# local


def run_local(tasks: list[Task], jobs: int, finished: Finished, status: Status) -> None:
    """Train `tasks` in this process (`jobs` 1) or in `jobs` spawned processes, reporting each as it ends."""
    if jobs == 1:
        for run, task in tasks:

            def on_epoch(record: dict[str, Any], run: Run = run, epochs: int = task["resolved"]["epochs"]) -> None:
                if status is not None:
                    status(f"{run.variant.name} seed{run.seed} epoch {record['epoch']}/{epochs}")

            try:
                result = execute(task, on_epoch)
            except Exception as error:  # noqa: BLE001 - reported, the sweep goes on
                finished(run, None, describe(error))
            else:
                finished(run, result, None)
        return
    context = multiprocessing.get_context("spawn")  # never fork a process that holds OpenMP threads
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_take_interrupts) as pool:
        futures = {pool.submit(execute, task): (run, task) for run, task in tasks}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    run, _ = futures[future]
                    raised = future.exception()
                    finished(run, None if raised else future.result(), None if raised is None else describe(raised))
                if pending and status is not None:  # epochs finished so far by the runs in flight
                    epochs = sum(epochs_written(Path(futures[f][1]["run_dir"])) for f in pending)
                    status(f"{min(jobs, len(pending))} running, {epochs} epoch(s) of them done")
        except BaseException:
            for future in pending:
                future.cancel()
            _interrupt_workers(pool)
            raise


def _take_interrupts() -> None:
    """Worker start: SIGINT raises KeyboardInterrupt, as in any Python process, also when the driver was
    started with SIGINT ignored (a non-interactive shell's background job, `rbp-native ... &` in a
    script), which its workers inherit: the driver stops them with SIGINT (_interrupt_workers)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _interrupt_workers(pool: ProcessPoolExecutor, seconds: float = 3.0) -> None:
    """Stop the runs in flight promptly when the driver is interrupted: SIGINT makes each worker's
    training stop within a batch and checkpoint (a terminal's Ctrl-C reaches them anyway, a SIGTERM
    to the driver does not); repeated until the workers are gone, since a worker that was waiting
    for work, or took the next queued run, needs its own. Workers still alive after `seconds` are
    terminated (their last checkpoint stays)."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in processes if p.is_alive()]
        if not alive:
            return
        for process in alive:
            try:
                os.kill(process.pid, signal.SIGINT)
            except (OSError, TypeError):
                pass
        time.sleep(0.2)
    for process in processes:
        if process.is_alive():
            process.terminate()


def epochs_written(run_dir: Path) -> int:
    try:
        with open(run_dir / HISTORY_CSV, "rb") as handle:
            return max(0, handle.read().count(b"\n") - 1)
    except OSError:
        return 0


# ----------------------------------------------------------------------------------------------
# ray


def run_ray(
    tasks: list[Task],
    finished: Finished,
    status: Status,
    *,
    address: str | None = None,
    retries: int = RAY_RETRIES,
    on_epoch: Callable[[str, dict[str, Any]], Any] | None = None,
) -> None:
    """Train `tasks` as Ray tasks, reporting each as it ends.

    Uses this process's Ray connection when ``ray.init`` was called already; else connects to `address`
    (``"auto"``, ``"HOST:PORT"``) or, without one, starts a Ray instance on this machine for the sweep
    and shuts it down at the end. A run whose worker dies is started again up to `retries` times; one
    that raises is not. On any exception here, KeyboardInterrupt included, the runs not yet finished are
    cancelled (their workers killed) and the exception goes on; finished runs stay on disk.
    `on_epoch(run_dir, record)`, if given, is called in the worker after every epoch (Ray must be able
    to serialize it)."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        # "local": a fresh instance even when one runs on this machine (that one is --address auto)
        try:
            ray.init(address=address or "local")
        except ConnectionError as error:
            raise RayUnreachable(
                f"cannot connect to the Ray cluster at {address!r} ({error}); is it running (ray status)? A cluster "
                "with token authentication needs its token here, and RAY_AUTH_MODE=token with an explicit "
                "HOST:PORT"
            ) from error
    try:
        largest = max((node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]), default=0.0)
        wanted = max(int(task["threads"]) for _, task in tasks)
        if wanted > largest:
            raise ValueError(
                f"a run asks for {wanted} CPU(s) (threads), but the largest node of the Ray cluster has {largest:g}"
            )
        remote = ray.remote(_train_on_ray)
        refs: dict[Any, Task] = {}
        pending: list[Any] = []
        try:
            for run, task in tasks:
                ref = remote.options(
                    num_cpus=int(task["threads"]), max_retries=int(retries), retry_exceptions=False, name=run.id
                ).remote(task, on_epoch)
                refs[ref] = (run, task)
                pending.append(ref)
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in done:
                    run, _ = refs[ref]
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as error:  # its worker died more than `retries` times
                        finished(run, None, describe(error))
                    else:
                        finished(run, None if "error" in result else result, result.get("error"))
                if pending and status is not None:
                    epochs = sum(epochs_written(Path(refs[ref][1]["run_dir"])) for ref in pending)
                    status(f"{len(pending)} queued or running, {epochs} epoch(s) of them done")
        except BaseException:
            _cancel(ray, pending)
            raise
    finally:
        if started_here:
            ray.shutdown()


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Stop the runs not yet finished: their workers are killed, each run keeps its last checkpoint.

    Not Ray's gentler cancel (a KeyboardInterrupt in the task, then a mid-epoch checkpoint): an interrupt
    that lands in the trainer's Python code between the end of an epoch's batches and the record of that
    epoch checkpoints the trained epoch as not done, and the resumed run trains it twice (seen here on
    MNIST). Errors here are dropped: the exception that led here is the one to report."""
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)


def _train_on_ray(task: dict[str, Any], on_epoch: Callable[[str, dict[str, Any]], Any] | None) -> dict[str, Any]:
    """One run inside a Ray worker: threads from the CPUs Ray assigned (Ray sets OMP_NUM_THREADS alone);
    an exception comes back as ``{"error": text}``, as the local backend records it."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    task = {**task, "threads": max(1, int(cpus))}
    callback = None if on_epoch is None else functools.partial(on_epoch, task["run_dir"])
    try:
        return execute(task, callback)
    except Exception as error:  # noqa: BLE001 - recorded as a failed run, the sweep goes on
        return {"error": describe(error)}
