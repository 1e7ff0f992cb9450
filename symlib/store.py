"""The run store: one JSON record per training run under ``data/runs/<key>.json``.

A record is a :class:`~symlib.training.RunResult` — config, final metrics, learning curve, wall
time and provenance — keyed by the stable hash of its full config (``RunConfig.key``), so a run
is computed once and reused by every chapter and sweep that asks for the same config.

* Writes are atomic: the record is written to a temporary file in the same folder and renamed,
  so a run killed half-way leaves no record and no corrupt file.
* A corrupt or truncated record is an error naming its path and what to do — never a silent skip.
* :meth:`RunStore.frame` and :meth:`RunStore.curves` return tidy pandas DataFrames for seaborn.
* :func:`cached_result` keeps a result that is not a training run (a kernel table, a probe grid) in
  one JSON file with its config and provenance, computed once.

The default root is the repository's ``data/``; the environment variable ``SYMLIB_DATA`` points
it elsewhere (tests and smoke runs use a temporary folder).  Used by every experiment chapter.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import torch

from .training import RunConfig, RunResult, fit, provenance

REPO_DATA = Path(__file__).resolve().parent.parent / "data"


class CorruptRecord(ValueError):
    """A record file that is not a complete run record."""


def default_root() -> Path:
    """``$SYMLIB_DATA`` if set, else the repository's ``data/``."""
    return Path(os.environ.get("SYMLIB_DATA") or REPO_DATA)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename (all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise



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
        atomic_write_text(path, json.dumps(result.to_dict(), indent=1, sort_keys=True) + "\n")
        return path

    def get(self, config: RunConfig | str) -> RunResult | None:
        """The stored result for a config (or key), ``None`` if it was never run."""
        path = self.path(_key(config))
        return self._read(path) if path.exists() else None

    def _read(self, path: Path) -> RunResult:
        hint = f"delete it and re-run the sweep (or `python -m symlib sweep`) to recompute it"
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CorruptRecord(f"corrupt run record {path}: not valid JSON ({e}); {hint}") from None
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

    def fit_cached(self, config: RunConfig, **fit_kwargs) -> RunResult:
        """The stored result, or train the run, store it and return it."""
        found = self.get(config)
        if found is not None:
            return found
        result = fit(config, **fit_kwargs)
        self.put(result)
        return result

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
             "threads": r.provenance.get("threads")} for r in results]
    return pd.DataFrame(rows)


def flatten_config(config: dict) -> dict:
    """``{"task": {"name": .., "k": 4}, "model": {...}, ...}`` -> ``{"task": .., "task.k": 4,
    "model.kind": .., "n": .., "seed": ..}`` plus a readable ``model`` label."""
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


TASK_NAMES = {"same_different": "same/different", "aba_abb": "ABA vs ABB", "aabb_abab": "AABB vs ABAB"}


def task_label(spec: dict) -> str:
    """A short name for plots: ``ABA vs ABB``, ``majority-6``, ``r=4, L=5, |W|=3, |R|=0`` …"""
    name = spec["name"]
    if name in TASK_NAMES:
        return TASK_NAMES[name]
    if name == "majority":
        return f"majority-{spec['k']}"
    if name == "random_templates":
        return f"r={spec['r']}, L={spec['length']}, |W|={spec['n_wildcards']}, |R|={spec['n_regular']}"
    params = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
    return f"{name}({params})" if params else name


def model_label(model: dict) -> str:
    """A short name for plots: ``transformer + KQ``, ``MLP``, ``LSTM`` …"""
    base = {"transformer": "transformer", "mlp": "MLP", "mlp_xxt": "MLP + XXᵀ", "rnn": "RNN",
            "lstm": "LSTM"}[model["kind"]]
    extras = [name for flag, name in (("kq_identity", "KQ"), ("vo_identity", "VO")) if model.get(flag)]
    if extras:
        base += " + " + " & ".join(extras)
    if extras and model.get("identity_scale", 1.0) != 1.0:
        base += f" (identity ×{model['identity_scale']:g})"
    if model.get("mimetic"):
        base += " (mimetic)"
    return base


def _key(config: RunConfig | str) -> str:
    return config if isinstance(config, str) else config.key
