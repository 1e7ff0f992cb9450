"""Chapter ``language_model``: do the KQ and VO identity terms help a GPT trained from scratch?

The paper trains GPT-2 from scratch on WikiText-2 with and without the two identity terms and
reports a slightly lower validation perplexity with them, never a higher one.  With
``a_h = b_h = 0`` at initialisation a modified model and the baseline of the same seed start
identical and see the same batches, so the comparison is *paired*: for each seed we take the
difference of the final log-perplexities (the mean token cross-entropy in nats),

    Δ_s = loss(variant, seed s) − loss(baseline, seed s),

and read its mean with a Student-t 95 % interval over seeds.  Δ < 0 means the variant is better;
``exp(Δ) − 1`` is the relative change of perplexity.

The verdict rule (:func:`lm_verdict`) is fixed before the runs:

* **reproduced** — the interval of Δ for KQ & VO lies below 0 (better, and never worse);
* **partial** — the interval holds 0 but its upper end is below :data:`NO_WORSE` (no detectable
  effect, and no sign of the variant being worse by more than 1 % perplexity);
* **not reproduced** — otherwise (the variant is, or may be, worse by more than that).

With one seed there is no interval and no verdict.

Figures (:func:`loss_figure`, :func:`paired_figure`, :func:`coefficient_figure`) draw the stored
curves with the paper's claim as grey guides.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pandas as pd
from scipy import stats

from .checks import part

NO_WORSE = math.log(1.01)   # Δ log-perplexity of +1 % perplexity: the most "never worse" allows
BASELINE = "baseline"


def paired_deltas(frame: pd.DataFrame, metric: str = "val_loss", baseline: str = BASELINE) -> pd.DataFrame:
    """Per (variant, seed): ``metric`` of the variant minus that of the baseline of the same seed.

    ``frame`` has one row per run with columns ``variant``, ``seed`` and ``metric`` (a loss in
    nats per token).  Seeds without a baseline run are left out; a (variant, seed) with two runs is
    an error (the pairing would be ambiguous)."""
    for col in ("variant", "seed", metric):
        if col not in frame.columns:
            raise ValueError(f"frame lacks column {col!r}; it needs 'variant', 'seed' and {metric!r}")
    dup = frame.duplicated(["variant", "seed"])
    if dup.any():
        first = frame[dup].iloc[0]
        raise ValueError(f"two runs of variant {first.variant!r}, seed {first.seed}: pairing needs one each")
    base = frame[frame.variant == baseline].set_index("seed")[metric]
    if base.empty:
        raise ValueError(f"no run of the {baseline!r} variant to pair with")
    other = frame[(frame.variant != baseline) & frame.seed.isin(base.index)]
    out = other.assign(delta=other[metric].to_numpy() - base.loc[other.seed].to_numpy())
    return out[["variant", "seed", "delta"]].sort_values(["variant", "seed"]).reset_index(drop=True)


def interval(deltas, level: float = 0.95) -> dict:
    """Mean of the paired differences with its Student-t interval (``low``/``high`` are NaN with
    fewer than two seeds) and the relative perplexity change ``exp(mean) − 1``."""
    x = pd.Series(deltas, dtype=float).dropna()
    if x.empty:
        raise ValueError("no paired differences")
    mean = float(x.mean())
    if len(x) < 2:
        low = high = float("nan")
    else:
        half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
        low, high = mean - half, mean + half
    return {"seeds": len(x), "mean": mean, "low": low, "high": high, "ppl_change": math.expm1(mean)}


def lm_verdict(deltas) -> tuple[str, str]:
    """The verdict of ``gpt2_wikitext`` from the paired Δ log-perplexity of KQ & VO against the
    baseline (module docstring), and the sentence that says why."""
    iv = interval(deltas)
    if iv["seeds"] < 2:
        raise ValueError("a verdict needs paired runs on at least two seeds")
    what = (f"Δ log-perplexity {iv['mean']:+.4f} [95% {iv['low']:+.4f}, {iv['high']:+.4f}] over "
            f"{iv['seeds']} paired seeds (perplexity {iv['ppl_change']:+.1%})")
    if iv["high"] < 0:
        return "reproduced", what + ": better"
    if iv["low"] <= 0 and iv["high"] < NO_WORSE:
        return "partial", what + ": no detectable effect, and not worse by more than 1 %"
    return "not reproduced", what + (": worse" if iv["low"] > 0 else ": may be worse by more than 1 %")


# ----------------------------------------------------------------------------- bf16: adopted only if it agrees

def bf16_agrees(fp32: pd.Series, bf16: pd.Series) -> tuple[bool, str]:
    """Can bf16 autocast stand in for float32?  ``fp32``, ``bf16``: the validation loss after the
    same number of tokens, indexed by seed (the pilot, :data:`PILOT`).  The rule, fixed before the
    pilot ran: on every seed, |bf16 − fp32| is at most the seed-to-seed spread of float32 (its
    max − min over seeds)."""
    common = sorted(set(fp32.index) & set(bf16.index))
    if len(common) < 2:
        raise ValueError("the bf16 check needs float32 and bf16 runs on at least two common seeds")
    spread = float(fp32.loc[common].max() - fp32.loc[common].min())
    gap = (bf16.loc[common] - fp32.loc[common]).abs()
    ok = bool((gap <= spread).all())
    return ok, (f"|bf16 − float32| validation loss {', '.join(f'{g:.4f} (seed {s})' for s, g in gap.items())} "
                f"against a float32 seed spread of {spread:.4f}: " + ("agrees" if ok else "differs"))


# ----------------------------------------------------------------------------- the runs

MAIN_PRECISION: str | None = "bf16"  # from the pilot's bf16 check (`bf16_agrees`; the chapter asserts they agree)
MAIN_SEEDS = (0, 1, 2)


def pairs_complete(frame: pd.DataFrame, variant: str = "kq_vo", seeds=MAIN_SEEDS) -> bool:
    """Are the runs the verdict reads all stored — ``variant`` and the baseline on every seed of
    ``seeds``?  The verdict of ``gpt2_wikitext`` is read then; KQ and VO alone, one seed each,
    add to the chapter but not to the verdict."""
    have = lambda v: set(frame.loc[frame.variant == v, "seed"])  # noqa: E731
    return set(seeds) <= have(variant) & have(BASELINE)


def main_steps(precision: str) -> int:
    """Steps of a main run: about 18 M tokens (8800 × 8 × 256) under bf16, half that in float32 —
    each run must finish within about two hours of one core (a checkpoint does not survive a
    fresh machine), and float32 steps cost 2.5× more on this CPU."""
    return 8800 if precision == "bf16" else 4400


def run_grid(name: str, vocab_size: int = 8192) -> list[tuple]:
    """The runs of experiment ``name`` as ``(GPTConfig, LMTrainConfig, seed)``:

    * ``pilot`` — 600 steps (1.2 M tokens): the baseline in float32 and in bf16 and KQ & VO in
      bf16, seeds 0 and 1.  It measures the seed spread, the paired spread, and whether bf16
      agrees with float32 (:func:`bf16_agrees`) before the long runs use it.
    * ``main`` — the runs the verdict reads: baseline and KQ & VO on seeds :data:`MAIN_SEEDS`, KQ
      alone and VO alone on seed 0, at :data:`MAIN_PRECISION` for :func:`main_steps`; empty until
      the pilot has decided the precision.
    * ``smoke`` — the pilot's six runs on a tiny model for a few steps (CI).

    ``vocab_size``: the tokenizer's (8192 for the corpus; smaller for a tiny fixture).
    """
    from .gpt import GPTConfig
    from .lm import LMTrainConfig
    if name == "pilot":
        short = LMTrainConfig(steps=600, eval_every=100)
        base = GPTConfig(vocab_size=vocab_size)
        return [(base, short, s) for s in (0, 1)] + \
               [(cfg, replace(short, precision="bf16"), s) for cfg in (base, base.with_variant("kq_vo")) for s in (0, 1)]
    if name == "main":
        if MAIN_PRECISION is None:
            return []
        t = LMTrainConfig(steps=main_steps(MAIN_PRECISION), precision=MAIN_PRECISION)
        base = GPTConfig(vocab_size=vocab_size)
        return [(base.with_variant(v), t, s) for s in MAIN_SEEDS for v in ("baseline", "kq_vo")] + \
               [(base.with_variant(v), t, 0) for v in ("kq", "vo")]
    if name == "smoke":
        tiny = GPTConfig(vocab_size=vocab_size, context=32, dim=32, depth=1, heads=2, dim_head=16)
        t = LMTrainConfig(steps=20, eval_every=10, eval_blocks=8)
        return [(tiny, t, s) for s in (0, 1)] + \
               [(cfg, replace(t, precision="bf16"), s) for cfg in (tiny, tiny.with_variant("kq_vo")) for s in (0, 1)]
    raise ValueError(f"unknown language-model experiment {name!r}; allowed: pilot, main, smoke")


def command(name: str) -> str:
    """The command that computes experiment ``name``'s runs (a figure's reproduce note)."""
    run_grid(name)  # refuses an unknown name
    return f"python -m symlib.language_model {name}" + (" --part 1/2 (and 2/2)" if name == "main" else "")


def stored(name: str, store=None) -> tuple[pd.DataFrame, int]:
    """(the stored runs of experiment ``name`` — rows of :func:`symlib.lm.lm_frame` —, the size of
    its grid).  A run's key includes the corpus identity (tokenizer and split fingerprints), taken
    from the stored records themselves, so a reader's clone without the corpus can read them."""
    from .lm import LMRunConfig, get_lm_run, lm_frame
    from .store import RunStore
    store = store or RunStore()
    frame = lm_frame(store)
    if frame.empty:
        return frame, len(run_grid(name))
    keys = set()
    for identity in {json.dumps(get_lm_run(store, k).config["corpus"], sort_keys=True) for k in frame.key}:
        identity = json.loads(identity)
        grid = run_grid(name, identity["vocab_size"])
        keys |= {LMRunConfig(identity, m, t, s).key for m, t, s in grid}
    return frame[frame.key.isin(keys)].reset_index(drop=True), len(grid)


PRECISION_NAMES = {"32": "float32", "bf16": "bf16"}  # LMTrainConfig.precision -> what a legend says


def curve_frame(frame: pd.DataFrame, store=None) -> pd.DataFrame:
    """The evaluation curves of the runs of ``frame`` (rows of :func:`symlib.lm.lm_frame`): one row
    per (run, evaluation) with ``variant``, ``precision``, ``run`` (the figures' label, "variant ·
    precision"), ``seed``, ``step``, ``tokens``, the losses, and the ``a_h`` / ``b_h`` lists of the
    identity variants."""
    from .lm import get_lm_run
    from .store import RunStore
    store = store or RunStore()
    rows = [{"key": r.key, "variant": r.variant, "precision": r.precision, "seed": r.seed,
             **{k: v for k, v in point.items() if k != "wall_s"}}
            for r in frame.itertuples() for point in get_lm_run(store, r.key).curve]
    curves = pd.DataFrame(rows)
    return curves.assign(run=curves.variant + " · " + curves.precision.map(PRECISION_NAMES)) if len(curves) else curves


def paired_curves(curves: pd.DataFrame, metric: str = "val_loss", baseline: str = BASELINE) -> pd.DataFrame:
    """Per (variant, seed, step): ``metric`` of the variant minus the baseline's of the same seed at
    the same step — the paired difference along training (``curves`` from :func:`curve_frame`,
    one precision).  Steps the baseline lacks are left out."""
    if curves.duplicated(["variant", "seed", "step"]).any():
        raise ValueError("two evaluations of one (variant, seed, step): pass one precision at a time")
    base = curves[curves.variant == baseline].set_index(["seed", "step"])[metric]
    other = curves[curves.variant != baseline]
    idx = pd.MultiIndex.from_frame(other[["seed", "step"]])
    keep = idx.isin(base.index)
    other = other[keep]
    out = other.assign(delta=other[metric].to_numpy() - base.loc[idx[keep]].to_numpy())
    return out[["variant", "seed", "step", "tokens", "delta"]].reset_index(drop=True)


def coefficient_frame(curves: pd.DataFrame) -> pd.DataFrame:
    """The ``a_h`` and ``b_h`` trajectories of ``curves`` (from :func:`curve_frame`) in long form:
    one row per (run, evaluation, coefficient, layer, head), for the variants that have the term
    (``a_h``: kq, kq_vo; ``b_h``: vo, kq_vo)."""
    rows = []
    for r in curves.itertuples():
        for name, on in (("a_h", ("kq", "kq_vo")), ("b_h", ("vo", "kq_vo"))):
            if r.variant not in on:
                continue
            for layer, heads in enumerate(getattr(r, name)):
                for head, value in enumerate(heads):
                    rows.append({"variant": r.variant, "seed": r.seed, "tokens": r.tokens, "coefficient": name,
                                 "layer": layer, "head": head, "unit": f"{r.variant}-{r.seed}-{layer}-{head}",
                                 "value": value})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- figures
# The paper plots no curve for this experiment, only a claim ("slightly better, never worse"), so
# the figures carry the claim as grey guides: Δ = 0 and the +1 % perplexity that "never worse" allows.

GUIDE = dict(color="grey", lw=1)


def _legend_below(fig, ax, ncols: int):
    """Move ``ax``'s legend under both panels of a two-panel figure: one legend for the figure,
    with room kept for it so the panels keep their width."""
    handles, labels = ax.get_legend_handles_labels()
    ax.get_legend().remove()
    rows = -(-len(labels) // ncols)
    fig.legend(handles, labels, loc="lower center", ncols=ncols, frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.05 + 0.045 * rows, 1, 1))
    return fig


def loss_figure(curves: pd.DataFrame):
    """Validation (left) and training loss (right) against training tokens, colour = run
    (variant · precision), line style = seed.  ``curves``: :func:`curve_frame`."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    sns.lineplot(data=curves, x="tokens", y="val_loss", hue="run", style="seed", ax=axes[0])
    sns.lineplot(data=curves, x="tokens", y="train_loss", hue="run", style="seed", ax=axes[1], legend=False)
    axes[0].set(xlabel="training tokens", ylabel="validation loss (nats/token)", title="validation loss")
    axes[1].set(xlabel="training tokens", ylabel="training loss (nats/token)",
                title="training loss (mean since the last evaluation)")
    return _legend_below(fig, axes[0], ncols=6)


def paired_figure(curves: pd.DataFrame):
    """Left: validation loss of the main runs against tokens (log scale), colour = variant, style =
    seed.  Right: the paired difference to the baseline of the same seed along training
    (:func:`paired_curves`), with Δ = 0 and the "never worse" bound :data:`NO_WORSE` in grey."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    sns.lineplot(data=curves, x="tokens", y="val_loss", hue="variant", style="seed", ax=axes[0])
    axes[0].set(xlabel="training tokens", ylabel="validation loss (nats/token)", yscale="log",
                title="validation loss (128 blocks of the validation split)")
    paired = paired_curves(curves)
    if len(paired):
        sns.lineplot(data=paired, x="tokens", y="delta", hue="variant", units="seed", estimator=None, ax=axes[1],
                     legend=False)
    axes[1].axhline(0, ls="--", **GUIDE)
    axes[1].axhline(NO_WORSE, ls=":", **GUIDE)
    axes[1].annotate("+1 % perplexity: the most \"never worse\" allows", (0.02, NO_WORSE), xycoords=("axes fraction", "data"),
                     va="bottom", fontsize=8, color="grey")
    axes[1].set(xlabel="training tokens", ylabel="Δ validation loss (variant − baseline)",
                title="paired Δ, same seed (below 0: variant better)")
    return _legend_below(fig, axes[0], ncols=8)


def coefficient_figure(coefficients: pd.DataFrame):
    """The trajectories of a_h and b_h (:func:`coefficient_frame`), one line per head, colour =
    layer; one column per coefficient, one row per variant."""
    import seaborn as sns
    many = coefficients.variant.nunique() > 1
    g = sns.relplot(data=coefficients, x="tokens", y="value", hue="layer", units="unit", estimator=None,
                    col="coefficient", row="variant" if many else None, kind="line", palette="viridis",
                    height=2.8 if many else 3.4, aspect=1.6 if many else 1.3, facet_kws={"sharey": False})
    g.set_titles("{row_name} · {col_name}" if many else "{col_name}")
    g.set_axis_labels("training tokens", "value")
    for ax in g.axes.flat:
        ax.axhline(0, ls="--", **GUIDE)
    return g.figure


def main(argv=None) -> None:
    """``python -m symlib.language_model EXPERIMENT [--part I/K]``: train the runs of
    :func:`run_grid` (part I of K: every K-th run, for one process per core), skipping stored
    ones and resuming checkpointed ones."""
    import argparse
    from .lm import fit_lm, lm_data
    from .store import RunStore
    p = argparse.ArgumentParser(prog="python -m symlib.language_model", description=main.__doc__)
    p.add_argument("experiment")
    p.add_argument("--part", default="1/1", help="I/K: run every K-th run starting at the I-th (1-based)")
    args = p.parse_args(argv)
    try:
        i, k = part(args.part)
    except ValueError as e:
        p.error(str(e))
    try:
        grid = run_grid(args.experiment)[i - 1::k]
    except ValueError as e:
        p.error(str(e))
    data, store = lm_data(), RunStore()
    for n, (model, train, seed) in enumerate(grid, 1):
        print(f"[{n}/{len(grid)}] {model.variant} seed {seed} {train.precision} {train.steps} steps", flush=True)
        fit_lm(model, train, data, seed, store=store, threads=1, progress=True)


if __name__ == "__main__":
    main()
