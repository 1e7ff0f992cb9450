"""Sweeps: run many configs, skip what the store holds, write each finished run atomically.

    configs = grid("aba_abb", models={"transformer": ModelConfig()}, n=[16, 64, 256], seeds=[0, 1, 2])
    run_sweep(configs)                       # local, one single-threaded run per core
    run_sweep(configs, scheduler="tcp://…")  # the same sweep on a Dask cluster

A sweep killed at any moment and restarted loses nothing (every finished run is already a
record, and a run in flight resumes from its last checkpoint, saved every 10 minutes next to the
records) and redoes nothing (records are found by config hash).  Before computing anything it
checks that the store can be written, and it claims each run just before computing it, so two
sweeps on one store share the work instead of doing it twice; a run another live sweep has
claimed is waited for (and computed here if that sweep dies without its record).  Progress —
runs done / total and an ETA — goes to stderr.  Locally, tiny models run faster as several single-threaded processes
than as one process with many threads (README, *Performance*), so ``workers`` defaults to the
number of cores, each run with ``threads=1``; for the last long runs of a grid, fewer workers
with more threads each (``workers=1, threads=2``) keep the cores busy instead.  Used by the
experiment chapters through :mod:`symlib.experiments`.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Mapping

from .checks import positive_int
from .data import DataConfig
from .models import ModelConfig
from .runs import RunConfig, RunResult, TrainConfig, run_config
from .store import RunStore


def grid(tasks, models: Mapping[str, ModelConfig] | Iterable[ModelConfig], n: Iterable[int],
         seeds: Iterable[int], train: TrainConfig | Iterable[TrainConfig] | None = None,
         data: Mapping | None = None) -> list[RunConfig]:
    """The cross product task × model × train × n × seed as :class:`RunConfig` s.

    ``tasks``: a name, spec dict or task, or a list of them.  ``data``: extra ``DataConfig``
    fields shared by every run (``n`` comes from the grid).
    """
    tasks = tasks if isinstance(tasks, (list, tuple)) else [tasks]
    models = list(models.values()) if isinstance(models, Mapping) else list(models)
    trains = [train or TrainConfig()] if train is None or isinstance(train, TrainConfig) else list(train)
    return [run_config(t, m, tr, DataConfig(n=k, **(data or {})), seed=s)
            for t, m, tr, k, s in itertools.product(tasks, models, trains, n, seeds)]


def missing(configs: Iterable[RunConfig], store: RunStore) -> list[RunConfig]:
    """Configs without a record, deduplicated; seed by seed (so an interrupted sweep leaves whole
    curves), most expensive first within a seed (better packing of the workers).  Every existing
    record is read, so a corrupt one is an error naming it, not a run counted as stored."""
    todo = {c.key: c for c in configs if store.get(c) is None}
    return sorted(todo.values(), key=lambda c: (c.seed, -c.data.n * c.train.epochs))


def _die_with_parent(parent: int) -> None:
    """Worker initializer: on Linux, have the kernel SIGKILL this worker when the sweep process
    ``parent`` dies (however it dies), so a killed sweep leaves no orphan burning a core on a run
    whose record nobody would write.  SIGKILL, not SIGTERM: Lightning catches SIGTERM inside
    ``fit``, and a worker has nothing to save — records are written by the sweep process.

    The signal is armed only once this runs, seconds after the spawn (imports first): a sweep
    killed in between has already left, the worker's parent is now init, and the signal would
    never come — so a worker whose parent is no longer ``parent`` exits at once."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def fit(config: RunConfig, **kwargs) -> RunResult:
    """:func:`symlib.training.fit`, imported only when a run is computed: defining and reading
    sweeps (:mod:`symlib.experiments`, the chapters) needs no Lightning."""
    from .training import fit as train
    return train(config, **kwargs)


def _run_one(config: dict, checkpoint: str | None = None, threads: int = 1) -> dict:
    """Worker entry point (top-level so that process pools and Dask can ship it); ``checkpoint``:
    the run's resumable training state (:meth:`RunStore.checkpoint_path`); ``threads``: torch
    intra-op threads of the run (recorded in its provenance)."""
    return fit(RunConfig.from_dict(config), threads=threads, checkpoint=checkpoint).to_dict()


UNGUARDED = ("a sweep's worker process imported a script that calls run_sweep at its top level; call it under "
             "`if __name__ == \"__main__\":` (the workers are spawned, and a spawned process imports the script "
             "that started it)")


def run_sweep(configs: Iterable[RunConfig], store: RunStore | None = None, workers: int | None = None,
              scheduler=None, progress: bool | None = None, poll: float = 5.0,
              threads: int = 1) -> list[RunResult]:
    """Compute every config missing from ``store`` and return the results of all ``configs``.

    ``workers=1`` runs in this process; ``workers>1`` uses a pool of spawned processes;
    ``scheduler`` (a Dask scheduler address, or a ``distributed.Client``) sends runs to a Dask
    cluster instead.  Each run is claimed (:meth:`RunStore.claim`) just before it is handed to a
    worker, and its record written by this process as soon as it arrives.  Runs claimed by another
    live sweep are checked every ``poll`` seconds until their record appears (or their claim
    dies, and this sweep computes them).  ``progress=None`` shows the bar on stderr except inside
    a notebook kernel.  ``threads``: torch threads per run (default 1: tiny models run faster as
    one single-threaded process per core; a model whose readout is a large matrix product — the
    next-token models at large n — gains from two).
    """
    positive_int("threads", threads)
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # multiprocessing's own test for it
        raise RuntimeError(UNGUARDED)
    configs = list(configs)
    store = store or RunStore()
    todo = missing(configs, store)
    if todo:
        store.check_writable()
    bar = _bar(len({c.key for c in configs}), len(todo), progress)
    try:
        if not todo:
            pass
        elif scheduler is not None:
            from distributed import Client
            client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
            try:
                _drain(todo, store, _DaskRunner(client, threads), bar, poll)
            finally:
                if client is not scheduler:
                    client.close()
        elif (workers or os.cpu_count() or 1) <= 1 or len(todo) == 1:
            _drain(todo, store, _InlineRunner(threads), bar, poll)
        else:
            ctx = multiprocessing.get_context("spawn")
            size = min(workers or os.cpu_count(), len(todo))
            with ProcessPoolExecutor(max_workers=size, mp_context=ctx, initializer=_die_with_parent,
                                     initargs=(os.getpid(),)) as pool:
                try:
                    _drain(todo, store, _PoolRunner(pool, size, threads), bar, poll)
                except BrokenProcessPool as e:
                    raise RuntimeError(
                        "a worker process of the sweep died: killed, out of memory, or — if the sweep was started "
                        "from a script — the script calls run_sweep without `if __name__ == \"__main__\":` (a "
                        "worker that stopped by itself printed why, above).  The runs finished before it are "
                        "stored: run the sweep again to resume") from e
    finally:
        bar.close()
    return store.load(configs)


def _drain(todo: list[RunConfig], store: RunStore, runner, bar, poll: float) -> None:
    """Hand the runs of ``todo`` (in order) to ``runner`` as it has room, each claimed first;
    skip those another sweep finished; wait for those another live sweep holds."""
    queue, running = list(todo), {}
    try:
        while queue or running:
            held = []
            for i, c in enumerate(queue):
                if len(running) >= runner.capacity:
                    held += queue[i:]
                    break
                if c in store:                      # finished by another sweep meanwhile
                    bar.update(1)
                elif store.claim_holder(c.key) is not None or not store.claim(c.key):
                    held.append(c)                  # being computed by another sweep
                elif c in store:                    # finished just before we claimed it
                    store.release(c.key)
                    bar.update(1)
                else:
                    try:
                        f = runner.submit(c, str(store.checkpoint_path(c.key)))
                    except BaseException:
                        store.release(c.key)
                        raise
                    running[f] = c
            queue = held
            if running:
                for f in runner.wait(list(running)):
                    c = running.pop(f)
                    try:
                        store.put(RunResult.from_dict(f.result()))
                    finally:
                        store.release(c.key)
                    bar.update(1)
            elif queue:
                time.sleep(poll)
    finally:
        for c in running.values():
            store.release(c.key)


class _InlineRunner:
    """One run at a time, in this process (``submit`` returns a finished future)."""

    capacity = 1

    def __init__(self, threads: int = 1):
        self.threads = threads

    def submit(self, config: RunConfig, checkpoint: str) -> Future:
        f = Future()
        f.set_result(_run_one(config.to_dict(), checkpoint, self.threads))
        return f

    def wait(self, futures):
        return futures


class _PoolRunner:
    """A process pool, kept busy with at most ``capacity`` runs in flight (so that runs are
    claimed only when a worker is free for them)."""

    def __init__(self, pool: ProcessPoolExecutor, capacity: int, threads: int = 1):
        self.pool, self.capacity, self.threads = pool, capacity, threads

    def submit(self, config: RunConfig, checkpoint: str) -> Future:
        return self.pool.submit(_run_one, config.to_dict(), checkpoint, self.threads)

    def wait(self, futures):
        return wait(futures, return_when=FIRST_COMPLETED).done


class _DaskRunner:
    """A Dask cluster: every run handed over at once (the scheduler queues them; a cluster's
    workers may arrive after the sweep starts), so each is claimed up front."""

    capacity = float("inf")

    def __init__(self, client, threads: int = 1):
        self.client, self.threads = client, threads

    def submit(self, config: RunConfig, checkpoint: str):
        # no checkpoint: a cluster's workers need not see this machine's store
        return self.client.submit(_run_one, config.to_dict(), None, self.threads, pure=False)

    def wait(self, futures):
        from distributed import wait as dask_wait
        return dask_wait(futures, return_when="FIRST_COMPLETED").done


def in_notebook() -> bool:
    """True inside a Jupyter kernel, where stderr would land in the notebook's outputs."""
    return "ipykernel" in sys.modules


def _bar(total: int, todo: int, enabled: bool | None):
    from tqdm.std import tqdm
    enabled = not in_notebook() if enabled is None else enabled
    return tqdm(total=total, initial=total - todo, desc="runs", unit="run", file=sys.stderr,
                disable=not enabled or todo == 0, dynamic_ncols=True)
