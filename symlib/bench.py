"""Benchmark: symlib's Lightning path against a bare PyTorch loop (not a test).

    python -m symlib.bench [--n 2048] [--epochs 16] [--repeats 3] [--threads 1]
    python -m symlib.bench --parallel      # sweep workers: processes vs threads
    python -m symlib.bench --last-layer    # readout-only runs: cached features vs none
    python -m symlib.bench --precision     # figure 2's models: bf16 autocast vs float32, and the sweep's cost
    python -m symlib.bench --compile       # the sweep transformer: torch.compile vs eager
    python -m symlib.bench --eval --n 4096 # the sweep transformer: evaluating every 20 epochs vs once

Both sides train the same transformer on the same task from the same seed, end to end (data,
model, training, one final evaluation of validation and test), interleaved in alternating order
so that machine drift hits both alike; each side's best (least disturbed) repeat is reported.
Prints samples/s of each and the ratio lightning / bare at batch 32 and 256; the goals are
>= 0.90 at batch 32 and >= 0.95 at batch 256 (README, *Performance*).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from .checks import positive_int
from .data import MAX_SIZE, DataConfig, make_data
from .models import ModelConfig, model_for
from .runs import TrainConfig
from .tasks import get_task
from .training import TensorBatches, fit, loss_fn


def bare_loop(task_name: str, model: ModelConfig, train: TrainConfig, data: DataConfig, seed: int) -> float:
    """The reference: the same work as :func:`symlib.fit` written as a plain PyTorch loop."""
    start = time.perf_counter()
    task = get_task(task_name)
    d = make_data(task, data, seed=seed)
    torch.manual_seed(seed)
    net = model_for(model, d, seed=seed)
    opt = torch.optim.Adam(net.parameters(), lr=train.lr)
    train_epochs(net, opt, TensorBatches(d.x["train"], d.y["train"], train.batch_size, seed), task.kind, train.epochs)
    with torch.no_grad():
        net.eval()
        for split in ("val", "test"):
            loss_fn(task.kind, net(d.x[split]), d.y[split]).item()
    return time.perf_counter() - start


def train_epochs(net, opt, batches: TensorBatches, kind: str, epochs: int) -> None:
    """The bare training loop: ``epochs`` passes over ``batches``, one optimizer step per batch."""
    for _ in range(epochs):
        for x, y in batches:
            loss = loss_fn(kind, net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()


def best_interleaved(sides: dict, repeats: int) -> dict[str, float]:
    """Run every side ``repeats`` times, alternating which goes first so that machine drift hits
    them alike; each side's least disturbed (smallest) wall time in seconds.  ``sides``: name ->
    ``f(seed)``, timed as a whole."""
    times = {name: [] for name in sides}
    for r in range(repeats):
        for name in (list(sides) if r % 2 == 0 else list(reversed(sides))):
            t = time.perf_counter()
            sides[name](r)
            times[name].append(time.perf_counter() - t)
    return {name: min(ts) for name, ts in times.items()}


def compare(batch_size: int, n: int, epochs: int, repeats: int, threads: int) -> dict:
    model = ModelConfig()
    train = TrainConfig(epochs=epochs, batch_size=batch_size, eval_every=epochs)
    data = DataConfig(n=n)
    torch.set_num_threads(threads)
    bare_loop("aba_abb", model, train, data, 0)  # warm-up of both paths (imports, allocator)
    fit("aba_abb", model, TrainConfig(epochs=1, batch_size=batch_size), data, seed=0, threads=threads)
    best = best_interleaved({"bare": lambda seed: bare_loop("aba_abb", model, train, data, seed),
                             "lightning": lambda seed: fit("aba_abb", model, train, data, seed=seed, threads=threads)},
                            repeats)
    samples = n * epochs
    b, l = samples / best["bare"], samples / best["lightning"]
    return {"batch_size": batch_size, "bare_samples_per_s": b, "lightning_samples_per_s": l, "ratio": l / b}


def parallel(runs: int = 8, n: int = 512, epochs: int = 100) -> dict:
    """Sweep throughput: ``runs`` identical-cost runs done (a) one after another in this process
    with 2 torch threads, (b) by ``run_sweep`` with 2 single-threaded worker processes."""
    import tempfile

    from .store import RunStore
    from .sweep import run_sweep
    from .runs import run_config
    configs = [run_config("aba_abb", ModelConfig(dim=64, heads=2, mlp_dim=128),
                          TrainConfig(epochs=epochs, eval_every=20), n, seed=s) for s in range(runs)]
    t = time.perf_counter()
    for c in configs:
        fit(c, threads=2)
    threads = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        run_sweep(configs, RunStore(tmp), workers=2, progress=False)
        processes = time.perf_counter() - t
    return {"one_process_2_threads_s": threads, "two_processes_1_thread_s": processes,
            "speedup": threads / processes}


def last_layer(n: int = 4096, epochs: int = 50, repeats: int = 3, threads: int = 1) -> dict:
    """Readout-only training (figure 8) with the frozen body's features cached once
    (``cache_features=True``, the default) against a forward pass through the body at every step;
    the sweep transformer at init scale 1, interleaved, best of ``repeats``."""
    from dataclasses import replace

    from .experiments import TRANSFORMER
    model = replace(TRANSFORMER, train_last_layer_only=True)
    train = TrainConfig(epochs=epochs, eval_every=epochs)
    times = {True: [], False: []}
    for r in range(repeats):
        for cache in ((True, False) if r % 2 else (False, True)):
            t = time.perf_counter()
            fit("aba_abb", model, train, n, seed=r, threads=threads, cache_features=cache)
            times[cache].append(time.perf_counter() - t)
    return {"cached_s": min(times[True]), "uncached_s": min(times[False]),
            "speedup": min(times[False]) / min(times[True])}


def precision_models() -> dict[str, ModelConfig]:
    """The models :func:`precision` times: figure 2's (chapter *Regression experiments*) by their
    kind — the sweep transformer stands for its identity variants — and check 1's wider transformer."""
    from .experiments import MODELS, TRANSFORMER
    return {"transformer": TRANSFORMER, "transformer (dim 128, 4 heads)": replace(TRANSFORMER, dim=128, heads=4, mlp_dim=256),
            "MLP": MODELS["MLP"], "RNN": MODELS["RNN"], "LSTM": MODELS["LSTM"]}


def precision(n: int = 2048, epochs: int = 8, repeats: int = 3, threads: int = 1) -> list[dict]:
    """Training speed under bf16 autocast against float32 of :func:`precision_models`: ``fit`` end
    to end on ABA vs ABB with the paper's batch size, repeats interleaved and alternated, the best of
    each side reported.  A speed figure only: whether bf16 changes the test losses is a question for
    full runs (``fidelity_bf16`` in the regression chapter), not for this benchmark."""
    from .experiments import PAPER
    data = DataConfig(n=n)
    torch.set_num_threads(threads)
    rows = []
    for label, model in precision_models().items():
        trains = {p: replace(PAPER, epochs=epochs, eval_every=epochs, stop_train_loss=None, precision=p)
                  for p in ("32", "bf16")}
        for p, train in trains.items():  # warm-up: imports, allocator, autocast kernels
            fit("aba_abb", model, replace(train, epochs=1, eval_every=1), data, seed=0, threads=threads)
        best = best_interleaved({p: (lambda seed, train=train: fit("aba_abb", model, train, data, seed=seed, threads=threads))
                                 for p, train in trains.items()}, repeats)
        f32, b16 = (n * epochs / best[p] for p in ("32", "bf16"))
        rows.append({"model": label, "float32_samples_per_s": f32, "bf16_samples_per_s": b16, "speedup": b16 / f32})
    return rows


def sweep_under_bf16(speedups: dict[str, float], store=None, name: str = "fig2") -> list[dict]:
    """What one seed of a stored regression sweep would cost under bf16: per seed, its stored
    CPU-hours (wall time × threads of each record) and the same with every run's time divided by
    the measured speed-up of its model kind (``speedups``: :func:`precision_models` label ->
    speed-up; a transformer with identity terms takes the plain transformer's).  An estimate: it
    assumes a run stops at the same epoch in both precisions, as ``fidelity_bf16``'s runs did
    not need to (they trained all epochs)."""
    from .experiments import experiment
    from .store import RunStore
    store = store or RunStore()
    by_kind = {"transformer": speedups["transformer"], "mlp": speedups["MLP"], "rnn": speedups["RNN"],
               "lstm": speedups["LSTM"]}
    seeds: dict[int, list[float]] = {}
    for c in experiment(name):
        r = store.get(c.key)
        if r is None:
            continue
        hours = r.wall_time_s * r.provenance.get("threads", 1) / 3600
        both = seeds.setdefault(c.seed, [0.0, 0.0])
        both[0] += hours
        both[1] += hours / by_kind[c.model.kind]
    return [{"seed": s, "float32_cpu_h": f, "bf16_cpu_h": b, "ratio": b / f} for s, (f, b) in sorted(seeds.items())]


def compiled(n: int = 2048, epochs: int = 8, repeats: int = 3, threads: int = 1) -> dict:
    """``torch.compile`` on the regression sweep's transformer (dim 64, 2 heads; chapter
    *Regression experiments*, section on speed), ABA vs ABB at the paper's batch size:
    ``compile_s``, the one-off cost of the first compiled training step (compilation of forward
    and backward, minus an eager step), and ``speedup``, the time of ``epochs`` epochs of the eager
    model over that of the compiled one once compiled (best of ``repeats`` interleaved).  A sweep
    would pay the compilation at least once per worker and again whenever the shapes change (the
    vocabulary, and so the embedding's shape, changes with n)."""
    from .experiments import PAPER, TRANSFORMER
    torch.set_num_threads(threads)
    task = get_task("aba_abb")
    d = make_data(task, DataConfig(n=n), seed=0)
    nets = {False: model_for(TRANSFORMER, d, seed=0), True: model_for(TRANSFORMER, d, seed=0)}
    opts = {c: torch.optim.Adam(net.parameters(), lr=PAPER.lr) for c, net in nets.items()}
    nets[True] = torch.compile(nets[True])
    batches = TensorBatches(d.x["train"], d.y["train"], PAPER.batch_size, 0)

    def train(c: bool, epochs: int) -> None:
        train_epochs(nets[c], opts[c], batches, task.kind, epochs)

    first = {}
    for c in (False, True):  # the first step of each: the compiled one compiles
        t = time.perf_counter()
        train(c, 1)
        first[c] = time.perf_counter() - t
    best = best_interleaved({c: (lambda seed, c=c: train(c, epochs)) for c in (False, True)}, repeats)
    return {"compile_s": first[True] - first[False], "eager_s": best[False], "compiled_s": best[True],
            "speedup": best[False] / best[True]}


def evaluation(n: int = 4096, epochs: int = 40, repeats: int = 3, threads: int = 1) -> dict:
    """What evaluating costs a full-length run of the regression sweep's transformer (ABA vs ABB,
    the paper's batch size): ``fit`` over ``epochs`` epochs evaluating every ``PAPER.eval_every``
    epochs (as the sweeps do; validation and test, one full-batch forward each) against evaluating
    only after the last epoch, best of ``repeats`` interleaved.  ``share``: the part of the run's
    time the extra evaluations take — what evaluating less often could save at most (issue 23,
    *Speed first*; chapter *Regression experiments*)."""
    from .experiments import PAPER, TRANSFORMER
    if epochs < 2 * PAPER.eval_every:
        raise ValueError(f"epochs must be at least {2 * PAPER.eval_every} (two evaluations at the sweeps' "
                         f"eval_every = {PAPER.eval_every}); got {epochs}")
    data = DataConfig(n=n)
    trains = {every: replace(PAPER, epochs=epochs, eval_every=every, stop_train_loss=None)
              for every in (PAPER.eval_every, epochs)}
    fit("aba_abb", TRANSFORMER, replace(PAPER, epochs=1, eval_every=1), data, seed=0, threads=threads)  # warm-up
    best = best_interleaved({every: (lambda seed, t=t: fit("aba_abb", TRANSFORMER, t, data, seed=seed, threads=threads))
                             for every, t in trains.items()}, repeats)
    often, once = best[PAPER.eval_every], best[epochs]
    return {"every": PAPER.eval_every, "often_s": often, "once_s": once, "share": 1 - once / often}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m symlib.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2048, help="training samples (default 2048)")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--parallel", action="store_true",
                   help="instead: compare 2 single-threaded sweep workers with 1 process of 2 threads")
    p.add_argument("--last-layer", action="store_true",
                   help="instead: readout-only training with cached features vs a forward pass per step")
    p.add_argument("--precision", action="store_true",
                   help="instead: figure 2's models (and check 1's dim 128) under bf16 autocast vs float32, "
                        "and what figure 2's sweep would cost under bf16")
    p.add_argument("--compile", action="store_true",
                   help="instead: the sweep transformer under torch.compile vs eager (bare loops)")
    p.add_argument("--eval", action="store_true",
                   help="instead: the sweep transformer evaluating every 20 epochs vs only at the end "
                        "(use --epochs 40 or more)")
    args = p.parse_args(argv)
    for name in ("n", "epochs", "repeats", "threads"):  # refused before minutes of warm-up, not after
        try:
            positive_int(f"--{name}", getattr(args, name))
        except ValueError as e:
            p.error(str(e))
    if args.n > MAX_SIZE:
        p.error(f"--n must be at most {MAX_SIZE} (the largest training set); got {args.n}")
    if args.precision:
        from .experiments import PAPER
        print(f"ABA vs ABB, n={args.n}, {args.epochs} epochs, batch {PAPER.batch_size} (the paper's protocol), "
              f"threads={args.threads}, best of {args.repeats} interleaved repeats")
        rows = precision(n=args.n, epochs=args.epochs, repeats=args.repeats, threads=args.threads)
        for r in rows:
            print(f"{r['model']:32s} float32 {r['float32_samples_per_s']:8.0f} samples/s   bf16 "
                  f"{r['bf16_samples_per_s']:8.0f} samples/s   speed-up {r['speedup']:.2f}x")
        print("figure 2's stored runs, one seed, at these speed-ups (estimate):")
        for r in sweep_under_bf16({r["model"]: r["speedup"] for r in rows}):
            print(f"  seed {r['seed']}: {r['float32_cpu_h']:.2f} CPU-h in float32 -> {r['bf16_cpu_h']:.2f} under bf16 "
                  f"({r['ratio']:.2f}x)")
        return
    if args.eval:
        r = evaluation(n=args.n, epochs=args.epochs, repeats=args.repeats, threads=args.threads)
        print(f"transformer dim 64 x 2 heads, ABA vs ABB, n={args.n}, {args.epochs} epochs, batch 1024, "
              f"threads={args.threads}: evaluating every {r['every']} epochs {r['often_s']:.2f} s, only at the end "
              f"{r['once_s']:.2f} s (best of {args.repeats}); the evaluations take {100 * r['share']:.1f} % of the run")
        return
    if args.compile:
        r = compiled(n=args.n, epochs=args.epochs, repeats=args.repeats, threads=args.threads)
        print(f"torch.compile, transformer dim 64 x 2 heads, ABA vs ABB, n={args.n}, batch 1024, threads={args.threads}: "
              f"the first compiled step costs {r['compile_s']:.0f} s more than an eager one; then {args.epochs} epochs "
              f"take {r['compiled_s']:.2f} s against {r['eager_s']:.2f} s eager (best of {args.repeats}), "
              f"speed-up {r['speedup']:.2f}x")
        return
    if args.last_layer:
        r = last_layer(n=args.n, epochs=args.epochs * 4, repeats=args.repeats, threads=args.threads)
        print(f"readout-only training (ABA vs ABB, n={args.n}, {args.epochs * 4} epochs): cached features "
              f"{r['cached_s']:.2f} s, body forward every step {r['uncached_s']:.2f} s, speed-up {r['speedup']:.1f}x")
        return
    if args.parallel:
        for n, epochs in ((32, 400), (1024, 40)):  # small-n runs (overhead-bound), large-n runs
            r = parallel(runs=8, n=n, epochs=epochs)
            print(f"8 runs (ABA vs ABB, n={n}, {epochs} epochs): one process with 2 threads "
                  f"{r['one_process_2_threads_s']:.1f} s, two single-threaded workers "
                  f"{r['two_processes_1_thread_s']:.1f} s (worker start-up included), "
                  f"speed-up {r['speedup']:.2f}x")
        return
    print(f"aba_abb, transformer {ModelConfig()}, n={args.n}, epochs={args.epochs}, "
          f"threads={args.threads}, best of {args.repeats} interleaved repeats")
    for bs in (32, 256):
        r = compare(bs, args.n, args.epochs, args.repeats, args.threads)
        goal = 0.90 if bs == 32 else 0.95
        print(f"batch {bs:4d}: bare {r['bare_samples_per_s']:8.0f} samples/s   lightning "
              f"{r['lightning_samples_per_s']:8.0f} samples/s   ratio {r['ratio']:.3f}  (goal >= {goal})")


if __name__ == "__main__":
    main()
