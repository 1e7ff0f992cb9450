"""What a run is, as plain data: its config, its record, and the early-stopping rule on a curve.

* :class:`TrainConfig`, :class:`RunConfig` (with the stable config hash ``key``) and
  :func:`run_config` — everything that determines a run's numbers;
* :class:`RunResult` — one finished run (config, final metrics, learning curve, wall time,
  provenance), what the run store keeps as one JSON record; :func:`summarize` turns a learning
  curve into its final metrics, :func:`provenance` and :func:`git_commit` say what computed it;
* :func:`converged` / :func:`stopped_curve` — the early-stopping rule of :class:`TrainConfig`,
  applied to a learning curve (during training, or afterwards to a stored full-length curve).

Nothing here imports Lightning: reading, hashing and summarising records is independent of how
they were trained (:mod:`symlib.training` does that).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from .checks import int_in, positive_int
from .data import DataConfig
from .models import ModelConfig, without_added_defaults
from .tasks import from_spec, get_task
from .templates import TemplateTask

VERSION = "0.1.0"  # symlib's version (symlib.__version__), recorded in every run's provenance

OPTIMIZERS = ("adam", "sgd")
STOP_METRICS = ("val_loss", "val_error")
PRECISIONS = {"32": "32-true", "bf16": "bf16-mixed"}  # TrainConfig.precision -> Lightning's name


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation protocol; part of a run's config hash.

    The paper's protocol is the default [exact where known]: Adam, lr 1e-3, batch 1024 (full
    batch for n <= 1024), 1000 epochs.

    Early stopping is off by default.  With ``stop_train_loss`` set, a run stops at the first
    evaluation where the epoch's train loss is below ``stop_train_loss`` *and* the validation
    metric ``stop_metric`` (``val_loss`` or ``val_error``) moved by at most ``stop_val_rtol``
    (relative; absolute floor 1e-6) over the last ``stop_window`` epochs.  The validation alphabet
    is disjoint from the test alphabet, so the rule never looks at test data.

    Fields added after runs were stored (:data:`ADDED_FIELDS`) are left out of ``to_dict`` — and
    so of the config hash — while at their default, so the keys of stored runs stay valid.
    """

    epochs: int = 1000
    lr: float = 1e-3
    batch_size: int = 1024
    optimizer: str = "adam"
    weight_decay: float = 0.0
    eval_every: int = 20  # learning-curve cadence, in epochs
    stop_train_loss: float | None = None
    stop_window: int = 100
    stop_val_rtol: float = 0.02
    stop_metric: str = "val_loss"
    precision: str = "32"  # "bf16": training steps under bf16 autocast (evaluation stays float32)

    ADDED_FIELDS = {"stop_metric": "val_loss", "precision": "32"}

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_every", "stop_window"):
            positive_int(f"train {name}", getattr(self, name))
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"train lr must be a finite positive number; got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0; got {self.weight_decay!r}")
        if self.stop_train_loss is not None and not (isinstance(self.stop_train_loss, (int, float))
                                                     and math.isfinite(self.stop_train_loss) and self.stop_train_loss > 0):
            raise ValueError(f"stop_train_loss must be a finite positive number or None; got {self.stop_train_loss!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        if self.stop_metric not in STOP_METRICS:
            raise ValueError(f"unknown stop_metric {self.stop_metric!r}; allowed: {', '.join(STOP_METRICS)}")

    def to_dict(self) -> dict:
        return without_added_defaults(asdict(self), self.ADDED_FIELDS)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers.  ``key`` is a stable hash of it."""

    task: dict  # the task's spec, see symlib.tasks.from_spec
    model: ModelConfig
    train: TrainConfig
    data: DataConfig
    seed: int = 0

    def to_dict(self) -> dict:
        return {"task": self.task, "model": self.model.to_dict(), "train": self.train.to_dict(),
                "data": self.data.to_dict(), "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        return cls(task=d["task"], model=ModelConfig.from_dict(d["model"]),
                   train=_from_dict(TrainConfig, d["train"]), data=_from_dict(DataConfig, d["data"]),
                   seed=d["seed"])

    @property
    def key(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_config(task, model: ModelConfig | None = None, train: TrainConfig | None = None,
               data: DataConfig | int = 64, seed: int = 0) -> RunConfig:
    """Assemble a :class:`RunConfig`; ``task`` is a name, a spec dict or a ``TemplateTask``."""
    task = _as_task(task)
    if isinstance(data, int) and not isinstance(data, bool):
        data = DataConfig(n=data)
    int_in("seed", seed, 0)
    return RunConfig(task.spec, model or ModelConfig(), train or TrainConfig(), data, seed)


@dataclass
class RunResult:
    """Plain data of one finished run (what the run store writes, one record per run)."""

    key: str
    config: dict
    metrics: dict
    curve: list[dict]
    wall_time_s: float
    provenance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunResult":
        return cls(**{f.name: d[f.name] for f in fields(cls)})


def summarize(curve: list[dict]) -> dict:
    """Final metrics (the last evaluation, the paper's protocol) and, for reference, the test
    metrics at the evaluation of lowest validation loss.  ``train_error`` is the epoch's 0-1 error
    on its training batches, each measured before its step (records before it was added lack it)."""
    last = curve[-1]
    best = min(curve, key=lambda r: r["val_loss"])
    extra = {k: last[k] for k in ("test_error_other_label",) if k in last}
    return {"epochs_run": last["epoch"], "train_loss": last["train_loss"], "train_error": last["train_error"],
            "val_loss": last["val_loss"], "val_error": last["val_error"],
            "test_loss": last["test_loss"], "test_error": last["test_error"], **extra,
            "best_epoch": best["epoch"], "best_val_loss": best["val_loss"],
            "best_test_loss": best["test_loss"], "best_test_error": best["test_error"]}


# ----------------------------------------------------------------------------- early stopping

VAL_FLOOR = 1e-6  # absolute tolerance of the rule, so that it is relative down to tiny losses


def converged(curve: list[dict], cfg: TrainConfig) -> bool:
    """The early-stopping rule of :class:`TrainConfig`, applied to a learning curve so far."""
    if cfg.stop_train_loss is None or curve[-1]["train_loss"] >= cfg.stop_train_loss:
        return False
    back = [r for r in curve if r["epoch"] <= curve[-1]["epoch"] - cfg.stop_window]
    if not back:
        return False
    before, now = back[-1][cfg.stop_metric], curve[-1][cfg.stop_metric]
    return abs(now - before) <= max(cfg.stop_val_rtol * before, VAL_FLOOR)


def stopped_curve(curve: list[dict], cfg: TrainConfig) -> list[dict]:
    """The prefix of a full-length curve at which ``cfg``'s rule would have stopped the run.

    Training is deterministic, so a run with the rule equals the full run up to its stop; this
    is how the book checks the rule on full 1000-epoch runs without re-training.
    """
    for i in range(len(curve)):
        if converged(curve[:i + 1], cfg):
            return curve[:i + 1]
    return curve


# ----------------------------------------------------------------------------- provenance


def provenance(threads: int, device: str, commit: str | None = None) -> dict:
    """Code and library versions, thread count and device of a run (or a cached result).
    ``commit``: the code's commit, taken when the work started (default: :func:`git_commit` now) —
    a long run must not record a commit made while it trained."""
    import numpy
    return {"symlib": VERSION, "git_commit": commit or git_commit(), "torch": torch.__version__,
            "lightning": _installed("lightning"), "numpy": numpy.__version__,
            "python": platform.python_version(), "threads": threads, "device": device,
            "machine": platform.machine()}


def trained_on(provenance: dict) -> str:
    """Where a run trained: ``"cpu"`` or ``"cuda:…"``.  Runs trained on a GPU before commit
    f5b812d were recorded as ``"cpu"`` (the device was read after Lightning had moved the module
    back); their torch is a CUDA build (``+cu`` in its version), which no CPU run of this book used,
    so such a record is read as ``"cuda"``."""
    device = provenance.get("device") or "cpu"
    return "cuda" if device == "cpu" and "+cu" in (provenance.get("torch") or "") else device


def _installed(package: str) -> str | None:
    """The installed version of ``package`` (without importing it), ``None`` if absent."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None


_GIT: dict = {}


def git_commit() -> str | None:
    """HEAD of the repository holding symlib, with ``-dirty`` if symlib/ has local changes — asked
    once per process and kept, since a process runs the code it imported (:func:`symlib.fit` asks
    at its start).

    A copy of the tree without its ``.git`` (a rented GPU machine, say) cannot tell: there the
    environment variable ``SYMLIB_GIT_COMMIT`` — set by whoever copied a clean checkout — is
    recorded instead, suffixed ``-copy``; with neither, ``None``."""
    if "commit" not in _GIT:
        root = Path(__file__).resolve().parent.parent
        try:
            sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                 text=True, timeout=10).stdout.strip() or None
            dirty = subprocess.run(["git", "status", "--porcelain", "--", "symlib"], cwd=root,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            _GIT["commit"] = f"{sha}-dirty" if sha and dirty else sha
        except (OSError, subprocess.SubprocessError):
            _GIT["commit"] = None
        if _GIT["commit"] is None and os.environ.get("SYMLIB_GIT_COMMIT"):
            _GIT["commit"] = os.environ["SYMLIB_GIT_COMMIT"] + "-copy"
    return _GIT["commit"]


def _as_task(task) -> TemplateTask:
    if isinstance(task, TemplateTask):
        return task
    if isinstance(task, dict):
        return from_spec(task)
    if isinstance(task, str):
        return get_task(task)
    raise ValueError(f"task must be a registry name, a spec dict or a TemplateTask; got {type(task).__name__}")


def _from_dict(cls, d: dict):
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {sorted(unknown)}; allowed: {sorted(known)}")
    return cls(**d)
