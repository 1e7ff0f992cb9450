"""The run store: one JSON record per training run under ``data/runs/<key>.json``.

A record is a :class:`~symlib.runs.RunResult` — config, final metrics, learning curve, wall
time and provenance — keyed by the stable hash of its full config (``RunConfig.key``), so a run
is computed once and reused by every chapter and sweep that asks for the same config.

* Writes are atomic: the record is written to a temporary file in the same folder and renamed,
  so a run killed half-way leaves no record and no corrupt file.  The temporary file carries the
  writer's pid; one whose writer was killed (SIGKILL leaves it behind) is removed by
  :meth:`RunStore.check_writable`, which every sweep calls before it computes anything.
* Records are readable by all (0644): a store is shared by the people and sweeps that use it.
* A corrupt or truncated record is an error naming its path and what to do — never a silent skip.
* Two sweeps on one store compute each run once: a sweep :meth:`~RunStore.claim` s a run before
  computing it (``runs/.<key>.claim`` holds its pid and host); a claim whose process is dead is
  ignored, so a killed sweep holds nothing.
* :meth:`RunStore.frame` and :meth:`RunStore.curves` return tidy pandas DataFrames for seaborn.
* :func:`cached_result` keeps a result that is not a training run (a kernel table, a probe grid) in
  one JSON file with its config and provenance, computed once.

The default root is the repository's ``data/``; the environment variable ``SYMLIB_DATA`` points
it elsewhere (tests and smoke runs use a temporary folder).  Used by every experiment chapter.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import torch

from .models import model_label
from .runs import RunConfig, RunResult, provenance, trained_on
from .tasks import task_label

REPO_DATA = Path(__file__).resolve().parent.parent / "data"


class CorruptRecord(ValueError):
    """A record file that is not a complete run record."""


HOST = socket.gethostname()
ORPHAN_AGE_S = 3600  # a temporary file without a pid in its name is an orphan after this long


def default_root() -> Path:
    """``$SYMLIB_DATA`` if set, else the repository's ``data/``."""
    return Path(os.environ.get("SYMLIB_DATA") or REPO_DATA)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename (all or nothing), readable by
    all (0644).  The temporary file is ``.<name>.<pid>.<random>.tmp`` in the same folder, so that
    one left by a killed writer can be told from a write in progress (:func:`remove_orphans`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``data`` to ``path`` the way :func:`atomic_write_text` writes text (synced temporary file,
    then a rename: all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pid_alive(pid: int, host: str = HOST) -> bool:
    """Whether process ``pid`` of ``host`` still runs.  A process of another host cannot be
    checked and counts as alive; a zombie (exited, not yet reaped) counts as dead."""
    if host != HOST:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


_TEMP_WITH_PID = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+\.tmp$")


def remove_orphans(folder: Path) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write_text` in ``folder`` whose writer is dead
    (or, for names without a pid, written by older code, that are over an hour old).  Returns them."""
    removed = []
    for p in Path(folder).glob(".*.tmp") if Path(folder).is_dir() else []:
        m = _TEMP_WITH_PID.match(p.name)
        try:
            orphan = not pid_alive(int(m.group(1))) if m else time.time() - p.stat().st_mtime > ORPHAN_AGE_S
            if orphan:
                p.unlink()
                removed.append(p)
        except FileNotFoundError:  # renamed or removed meanwhile
            pass
    return removed



def cached_result(path: str | Path, config: dict, compute: Callable[[], object], recompute: bool = False,
                  store: bool = True) -> object:
    """A result computed once into the JSON file ``path``: ``{"config", "result", "wall_time_s",
    "provenance"}``.  Chapters keep results that are not training runs (kernel tables, two-sample
    tests, probe grids) this way.

    The stored ``result`` is returned if its ``config`` equals ``config``.  A stored file with another
    config is an error, not silently overwritten: pass ``recompute=True`` to replace it.  Otherwise
    ``compute()`` runs and its result is written atomically with the config, wall time and provenance
    (code and library versions).  ``store=False`` (a chapter's smoke profile) computes and returns
    without touching ``path``.  The result goes through JSON either way, so a fresh and a stored
    result look the same (lists, not tuples or arrays).
    """
    path = Path(path)
    config = json.loads(json.dumps(config))
    if store and path.exists() and not recompute:
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"corrupt result file {path} ({e}); recompute it with recompute=True") from None
        if not isinstance(stored, dict) or "result" not in stored:
            raise ValueError(f"{path} is not a result file (no 'result' field); recompute it with recompute=True")
        if stored.get("config") != config:
            raise ValueError(f"{path} was computed with config {stored.get('config')}, not {config}; "
                             "recompute it with recompute=True")
        return stored["result"]
    start = time.perf_counter()
    result = json.loads(json.dumps(compute()))
    if store:
        record = {"config": config, "result": result, "wall_time_s": round(time.perf_counter() - start, 2),
                  "provenance": provenance(torch.get_num_threads(), "cpu")}
        atomic_write_text(path, json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return result


class RunStore:
    """Records of finished runs, one file each, keyed by config hash."""

    def __init__(self, root: str | Path | None = None):
        if isinstance(root, str) and not root.strip():
            raise ValueError("the run-store root must name a folder; got an empty string "
                             "(leave it out for $SYMLIB_DATA or the repository's data/)")
        self.root = Path(root) if root is not None else default_root()
        self.runs = self.root / "runs"

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.runs / f"{key}.json"

    def __contains__(self, config: RunConfig | str) -> bool:
        return self.path(_key(config)).exists()

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.runs.glob("*.json")) if self.runs.exists() else []

    def put(self, result: RunResult) -> Path:
        path = self.path(result.key)
        try:
            atomic_write_text(path, json.dumps(result.to_dict(), indent=1, sort_keys=True) + "\n")
        except OSError as e:
            raise ValueError(f"cannot write to the run store {self.root}: writing {path} failed "
                             f"({e.strerror or e}); free space or fix its permissions") from None
        return path

    def check_writable(self) -> None:
        """Create ``runs/`` and write, sync and remove a small probe file there, so that a store
        that cannot be written (read-only, full, not a folder) is refused before a sweep computes
        anything, not after its first run; and remove the orphan temporary files of killed writers."""
        probe = self.runs / f".probe.{os.getpid()}.x.tmp"  # an orphan if killed: removed like one
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
            atomic_write_text(probe, "x" * 4096)
            probe.unlink()
        except OSError as e:
            raise ValueError(f"cannot write to the run store {self.root} ({e.strerror or e}); "
                             "use a writable folder (--data or SYMLIB_DATA), or free space") from None
        remove_orphans(self.runs)

    # ------------------------------------------------------------------------- claims

    def checkpoint_path(self, key: str) -> Path:
        """Where a sweep keeps run ``key``'s resumable training state while it runs
        (:class:`symlib.training.Resumable`; out of git, removed when the record is written)."""
        return self.runs / f".{key}.ckpt"

    def claim_path(self, key: str) -> Path:
        return self.runs / f".{key}.claim"

    def claim_holder(self, key: str) -> dict | None:
        """``{"pid", "host"}`` of the live process that claimed run ``key``, or ``None`` if no
        live process holds it (no claim, its process is dead, or the file is not a claim)."""
        return _live_holder(self.claim_path(key))

    def claim(self, key: str) -> bool:
        """Take run ``key`` for this process before computing it; ``False`` if a live process
        (this one included) holds it.  The claim file is created whole and exclusively (a link
        to a complete temporary file), and a dead holder's claim is taken over."""
        path = self.claim_path(key)
        mine = self.runs / f".{key}.claim.{os.getpid()}.new.tmp"
        atomic_write_text(mine, json.dumps({"pid": os.getpid(), "host": HOST}))
        try:
            for _ in range(10):
                try:
                    os.link(mine, path)  # atomic and exclusive: fails if a claim exists
                    return True
                except FileExistsError:
                    pass
                if self.claim_holder(key) is not None:
                    return False
                stale = self.runs / f".{key}.claim.{os.getpid()}.stale.tmp"
                try:
                    os.rename(path, stale)  # one taker wins the rename of the dead holder's claim
                except FileNotFoundError:
                    continue
                if _live_holder(stale) is not None:
                    try:  # a live claim made in the meantime: put it back
                        os.link(stale, path)
                    except FileExistsError:
                        pass
                    stale.unlink(missing_ok=True)
                    return False
                stale.unlink(missing_ok=True)
            return False
        finally:
            mine.unlink(missing_ok=True)

    def release(self, key: str) -> None:
        """Drop this process's claim on run ``key`` (a claim held by another process is kept)."""
        try:
            holder = json.loads(self.claim_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if holder.get("pid") == os.getpid() and holder.get("host") == HOST:
            self.claim_path(key).unlink(missing_ok=True)

    def get(self, config: RunConfig | str) -> RunResult | None:
        """The stored result for a config (or key), ``None`` if it was never run."""
        path = self.path(_key(config))
        return self._read(path) if path.exists() else None

    def _read(self, path: Path) -> RunResult:
        hint = f"delete it and re-run the sweep (or `python -m symlib sweep`) to recompute it"
        if not path.is_file():
            raise CorruptRecord(f"corrupt run record {path}: not a file (a folder?); {hint}")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CorruptRecord(f"corrupt run record {path}: not valid JSON ({e}); {hint}") from None
        except OSError as e:
            raise CorruptRecord(f"cannot read run record {path} ({e.strerror or e}); fix its permissions") from None
        missing = {"key", "config", "metrics", "curve", "wall_time_s", "provenance"} - set(d if isinstance(d, dict) else {})
        if missing:
            raise CorruptRecord(f"corrupt run record {path}: missing field(s) {sorted(missing)}; {hint}")
        if d["key"] != path.stem:
            raise CorruptRecord(f"corrupt run record {path}: it holds key {d['key']!r}; {hint}")
        try:
            if RunConfig.from_dict(d["config"]).key != d["key"]:
                raise CorruptRecord(f"corrupt run record {path}: its config does not hash to its key; {hint}")
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, CorruptRecord):
                raise
            raise CorruptRecord(f"corrupt run record {path}: unreadable config ({e}); {hint}") from None
        return RunResult.from_dict(d)

    def load(self, configs: Iterable[RunConfig | str] | None = None) -> list[RunResult]:
        """Stored results for ``configs`` (missing ones skipped), or every record if ``None``."""
        keys = self.keys() if configs is None else [_key(c) for c in configs]
        return [self._read(self.path(k)) for k in keys if self.path(k).exists()]

    def frame(self, configs: Iterable[RunConfig | str] | None = None) -> pd.DataFrame:
        """One row per run: flattened config columns and final metrics (tidy, for seaborn)."""
        return results_frame(self.load(configs))

    def curves(self, configs: Iterable[RunConfig | str] | None = None) -> pd.DataFrame:
        """One row per (run, evaluation epoch): config columns and the curve's metrics."""
        rows = []
        for r in self.load(configs):
            cfg = flatten_config(r.config)
            rows += [{"key": r.key, **cfg, **point} for point in r.curve]
        return pd.DataFrame(rows)


def results_frame(results: Iterable[RunResult]) -> pd.DataFrame:
    rows = [{"key": r.key, **flatten_config(r.config), **r.metrics, "wall_time_s": r.wall_time_s,
             "threads": r.provenance.get("threads"), "device": trained_on(r.provenance)} for r in results]
    return pd.DataFrame(rows)


def flatten_config(config: dict) -> dict:
    """``{"task": {"name": .., "k": 4}, "model": {...}, ...}`` -> ``{"task": .., "task.k": 4,
    "model.kind": .., "n": .., "seed": ..}`` plus the ``model`` and ``task_label`` names
    (:func:`~symlib.models.model_label`, :func:`~symlib.tasks.task_label`)."""
    out = {"task": config["task"]["name"]}
    out.update({f"task.{k}": v for k, v in config["task"].items() if k != "name"})
    out.update({f"model.{k}": v for k, v in config["model"].items()})
    out.update({f"train.{k}": v for k, v in config["train"].items()})
    out.update({f"data.{k}": v for k, v in config["data"].items()})
    out["n"] = config["data"]["n"]
    out["seed"] = config["seed"]
    out["model"] = model_label(config["model"])
    out["task_label"] = task_label(config["task"])
    return out


def _live_holder(path: Path) -> dict | None:
    """The claim file's ``{"pid", "host"}`` if that process is alive, else ``None``."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return holder if pid_alive(int(holder["pid"]), str(holder["host"])) else None
    except (OSError, ValueError, KeyError, TypeError):  # gone, or not a claim
        return None


def _key(config: RunConfig | str) -> str:
    return config if isinstance(config, str) else config.key
