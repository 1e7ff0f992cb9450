"""Command line: ``python -m symlib COMMAND …``.

    python -m symlib train --task aba_abb --model transformer --kq-identity --n 64 --seed 0

prints one JSON line: the :class:`~symlib.runs.RunResult` of the run, strict JSON (a loss
that became NaN or infinite is printed as null, and stderr says the run diverged).  Bad input
exits with code 2 and a message saying what was wrong and what is allowed; Ctrl-C exits with 130.  Other modules add commands
through a ``register(subparsers)`` function listed in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys

from .checks import positive_int
from .data import DataConfig
from .models import MODEL_KINDS, ModelConfig
from .tasks import REGISTRY
from .runs import OPTIMIZERS, TrainConfig
from .training import fit

# Modules that contribute a sub-command through register(subparsers).
COMMANDS = ["symlib.cli", "symlib.book", "symlib.corpus", "symlib.pretrained"]


def register(sub) -> None:
    p = sub.add_parser("train", help="train one run and print its result as one JSON line",
                       description="Train one run and print its RunResult as one JSON line.")
    p.add_argument("--task", required=True, help=f"task name: {', '.join(REGISTRY)}")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="task parameter, repeatable (e.g. --param k=4 for majority)")
    m = p.add_argument_group("model")
    m.add_argument("--model", default="transformer", help=f"model kind: {', '.join(MODEL_KINDS)}")
    m.add_argument("--kq-identity", action="store_true", help="logits += a_h X Xᵀ (a_h init 0)")
    m.add_argument("--vo-identity", action="store_true", help="output += Σ_h b_h A_h X (b_h init 0)")
    for name, typ in [("dim", int), ("depth", int), ("heads", int), ("dim-head", int), ("mlp-dim", int),
                      ("hidden", int), ("identity-scale", float), ("logit-scale", float), ("init-scale", float)]:
        m.add_argument(f"--{name}", type=typ)
    m.add_argument("--mimetic", type=float, nargs=2, metavar=("ALPHA", "BETA"),
                   help="mimetic Q/K initialisation W_Qᵀ W_K ≈ ALPHA Z + BETA I")
    m.add_argument("--train-last-layer-only", action="store_true", help="random-features regime")
    d = p.add_argument_group("data")
    d.add_argument("--n", type=int, required=True, help="training samples (= train alphabet size by default)")
    for name in ("train-alphabet", "n-val", "val-alphabet", "n-test", "test-alphabet"):
        d.add_argument(f"--{name}", type=int)
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--optimizer", help=f"one of {', '.join(OPTIMIZERS)}")
    t.add_argument("--eval-every", type=int)
    t.add_argument("--stop-train-loss", type=float, help="enable the early-stopping rule (TrainConfig)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--progress", action="store_true", help="epoch progress bar on stderr")
    p.set_defaults(run=_train)

    s = sub.add_parser("sweep", help="run experiments' sweeps, computing only what the store lacks",
                       description="Run experiments of symlib.experiments in one pool of workers "
                                   "(no core idles while one experiment finishes its last run); "
                                   "finished runs are skipped, each new run is written to the "
                                   "store as it finishes.")
    s.add_argument("experiments", nargs="+", metavar="experiment",
                   help="experiment name(s) (see symlib.experiments.EXPERIMENTS)")
    s.add_argument("--profile", default="paper", help="paper (default) or smoke")
    s.add_argument("--seeds", type=int, nargs="+", help="only these seeds (default: the experiment's)")
    s.add_argument("--workers", type=int, help="local processes (default: one per core)")
    s.add_argument("--threads", type=int, default=1,
                   help="torch threads per run (default 1; e.g. --workers 1 --threads 2 for one long run)")
    s.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786) instead of local processes")
    s.add_argument("--data", help="run-store root (default: $SYMLIB_DATA or the repository's data/)")
    s.add_argument("--dry-run", action="store_true", help="print how many runs exist and are missing")
    s.set_defaults(run=_sweep)


def _options(args, names) -> dict:
    """The given (non-None) options among ``names``, as keyword arguments."""
    out = {}
    for n in names:
        v = getattr(args, n)
        if v is not None and v is not False:
            out[n] = v
    return out


def _train(args) -> None:
    params = {}
    for item in args.param:
        if "=" not in item:
            raise ValueError(f"--param takes NAME=VALUE; got {item!r}")
        k, v = item.split("=", 1)
        try:
            params[k] = json.loads(v)
        except json.JSONDecodeError:
            params[k] = v
    if args.task not in REGISTRY:
        raise ValueError(f"unknown task {args.task!r}; allowed: {', '.join(REGISTRY)}")
    from .tasks import get_task
    task = get_task(args.task, **params)
    model = ModelConfig(kind=args.model, **_options(args, [
        "kq_identity", "vo_identity", "dim", "depth", "heads", "dim_head", "mlp_dim", "hidden",
        "identity_scale", "logit_scale", "init_scale", "mimetic", "train_last_layer_only"]))
    train = TrainConfig(**_options(args, ["epochs", "lr", "batch_size", "optimizer", "eval_every",
                                          "stop_train_loss"]))
    data = DataConfig(n=args.n, **_options(args, ["train_alphabet", "n_val", "val_alphabet", "n_test",
                                                  "test_alphabet"]))
    positive_int("--threads", args.threads)
    result = fit(task, model, train, data, seed=args.seed, threads=args.threads, progress=args.progress)
    diverged = [row["epoch"] for row in result.curve if not all(map(_finite, row.values()))]
    if diverged or not all(map(_finite, result.metrics.values())):
        at = f" at epoch {diverged[0]}" if diverged else ""
        print(f"python -m symlib train: warning: the run diverged: its loss became NaN or infinite{at} "
              "(try a smaller --lr); non-finite numbers are printed as null", file=sys.stderr)
    print(json.dumps(_strict(result.to_dict()), allow_nan=False))


def _finite(x) -> bool:
    return not isinstance(x, float) or math.isfinite(x)


def _strict(x):
    """``x`` with every NaN or infinite float replaced by None (strict JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_strict(v) for v in x]
    return x if _finite(x) else None


def _sweep(args) -> None:
    from .experiments import experiment
    from .store import RunStore
    from .sweep import missing, run_sweep
    by_name = {name: experiment(name, args.profile) for name in args.experiments}
    configs = [c for cs in by_name.values() for c in cs]
    names = " + ".join(by_name)
    if args.seeds is not None:
        have = sorted({c.seed for c in configs})
        unknown = sorted(set(args.seeds) - set(have))
        if unknown:
            raise ValueError(f"experiment {names} ({args.profile}) has no seed "
                             f"{', '.join(map(str, unknown))}; its seeds: {', '.join(map(str, have))}")
        configs = [c for c in configs if c.seed in set(args.seeds)]
    if args.data is not None and not args.data.strip():
        raise ValueError("--data must name a folder; got an empty string (leave it out for "
                         "$SYMLIB_DATA or the repository's data/)")
    store = RunStore(args.data)
    if args.workers is not None:
        positive_int("--workers", args.workers)
    positive_int("--threads", args.threads)
    todo = missing(configs, store)
    total = len({c.key for c in configs})
    print(f"{names} ({args.profile}): {total} runs, {total - len(todo)} in {store.root}, "
          f"{len(todo)} to compute", file=sys.stderr)
    if not args.dry_run:
        run_sweep(configs, store, workers=args.workers, scheduler=args.scheduler, threads=args.threads)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symlib", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except ValueError as e:
        print(f"python -m symlib {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"python -m symlib {args.command}: interrupted" + (f": {e}" if str(e) else ""), file=sys.stderr)
        return 130
    return 0
