"""The reproduction status: one row per claim of the paper, our measurement, and a verdict.

Each chapter, when executed in the ``paper`` profile, calls :func:`record` for the claims it
tests; the record (``<store root>/status/<claim id>.json``) holds the measurement as a short
sentence with rounded numbers, the verdict and the code version.  The *Reproduction status* page
renders :func:`table`: every claim of :data:`CLAIMS` (the brief's list, §4–5), with "not yet run"
where no chapter has recorded it yet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import __version__
from .store import atomic_write_text, default_root

VERDICTS = ("reproduced", "partial", "not reproduced", "not yet run")

# id -> (chapter that tests it, the paper's claim as the brief states it)
CLAIMS: dict[str, tuple[str, str]] = {
    # theory (brief §4)
    "theory_mlp_unseen_weights": ("mlp_failure", "An MLP trained by SGD/Adam never moves the first-layer weights of unseen tokens; its expected test loss on ±1 labels is 1 + E[F²] ≥ 1 for every n."),
    "theory_kernel_check_values": ("kernel", "κ at β=γ=0 equals 1ᵀXYᵀ1/k², and ∂²_β∂²_γ κ at 0 equals 8 tr(XYᵀ)/k² − 8·1ᵀXYᵀ1/k³."),
    "theory_kernel_nonsingular": ("kernel", "The template matrix N of the transformer kernel is nonsingular for generic (β, γ), so kernel regression generalizes to unseen symbols given enough data; the KQ identity improves its conditioning."),
    "theory_inverse_scaling": ("next_token_theory", "With symbolic labels and a tied unembedding, an unseen token's embedding is nearly orthogonal to the span of the training updates (squared projection ~ n/d); the VO identity lets the net copy it for any d."),
    # regression experiments (brief §5)
    "mlp_trivial": ("regression", "MLP: test loss stays at the trivial level (≈1) for every n up to ~8k while its train loss → 0."),
    "transformer_needs_data": ("regression", "The transformer generalizes on same/different and ABA vs ABB, but only with n in the thousands (test loss < 0.1 near n ≈ 2k)."),
    "kq_sample_efficiency": ("regression", "The KQ identity reaches the same test loss with roughly 16–64× fewer samples (tens of samples)."),
    "vo_regression": ("regression", "The VO identity alone helps less on regression tasks."),
    "rnn_lstm": ("regression", "RNN and LSTM begin to generalize only above ~2k samples and stay behind the transformer."),
    "mlp_xxt": ("regression", "An MLP given X Xᵀ features generalizes."),
    "majority": ("regression", "Majority: longer is harder; the plain transformer does not learn lengths 6 and 8 with n ≤ 8k; with both identities it does."),
    "random_templates": ("regression", "Random templates: more templates, more wildcards or longer templates need more data; any regular token makes the task much easier."),
    "hp_learning_rate": ("regression", "Best learning rate 3e-4…1e-3; lr ≥ 1e-2 fails."),
    "hp_batch_size": ("regression", "Smaller batches help at small n."),
    "hp_depth_heads": ("regression", "More depth and more heads help."),
    "hp_embedding_dim": ("regression", "A larger embedding dimension hurts, even in regression."),
    "kernel_regime": ("regression", "Training only the last layer: no generalization at the default init scale even at n ≈ 16k; larger init scales help but stay data-hungry."),
    "mimetic": ("regression", "Mimetic initialisation gives a data-efficiency gain comparable to the KQ identity."),
    # next-token experiments (brief §5)
    "copy_inverse_scaling": ("next_token", "Copy task: the n needed for < 10% test error grows roughly linearly with the embedding dimension d (64…4096); with the VO identity a handful of samples suffices at every d."),
    "variable_binding": ("next_token", "Variable binding: the plain transformer plateaus near error 0.5 and is still wrong on a sizeable fraction at n = 2^18; with both identities the error reaches ≈ 0 by n ≈ 16k."),
    "gpt2_wikitext": ("gpt2", "GPT-2 trained from scratch on WikiText-2 with the modifications: perplexity slightly better, never worse."),
    "gpt2_pretrained": ("gpt2", "A pretrained GPT-2 fine-tuned on template tasks is far more sample-efficient than one trained from scratch; its heads show identity-like diagonals in W_K W_Qᵀ and W_V W_Oᵀ."),
}


def grade(checks) -> str:
    """The verdict of a claim tested by several checks (booleans, numpy's included): "reproduced"
    if every check holds, "partial" if some do, "not reproduced" if none do (or there are none).

    Counting is done here, one check at a time, because numpy booleans do not add up: ``np.True_ +
    np.True_`` is ``True`` (logical or), not 2. Used by the figure-5 claim cell of *Regression*.
    """
    held = [bool(c) for c in checks]
    return "reproduced" if held and all(held) else "partial" if any(held) else "not reproduced"


def status_dir(root: str | Path | None = None) -> Path:
    return Path(root if root is not None else default_root()) / "status"


def record(claim: str, measured: str, verdict: str, root: str | Path | None = None) -> Path:
    """Record our measurement for ``claim`` (an id of :data:`CLAIMS`) with a verdict."""
    if claim not in CLAIMS:
        raise ValueError(f"unknown claim {claim!r}; allowed: {', '.join(CLAIMS)}")
    if verdict not in VERDICTS[:-1]:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS[:-1])}; got {verdict!r}")
    if not isinstance(measured, str) or not measured.strip():
        raise ValueError("measured must be a non-empty sentence with the numbers we measured")
    from .training import git_commit
    chapter, paper = CLAIMS[claim]
    path = status_dir(root) / f"{claim}.json"
    if path.exists():  # unchanged findings keep their record (and the commit that first wrote it)
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            if (old.get("paper"), old.get("measured"), old.get("verdict")) == (paper, measured.strip(), verdict):
                return path
        except (ValueError, AttributeError):
            pass  # a corrupt or malformed record is simply rewritten
    rec = {"claim": claim, "chapter": chapter, "paper": paper, "measured": measured.strip(),
           "verdict": verdict, "symlib": __version__, "git_commit": git_commit()}
    atomic_write_text(path, json.dumps(rec, indent=1, ensure_ascii=False) + "\n")
    return path


def table(root: str | Path | None = None) -> pd.DataFrame:
    """Every claim with our measurement and verdict ("not yet run" where none is recorded)."""
    rows = []
    for claim, (chapter, paper) in CLAIMS.items():
        path = status_dir(root) / f"{claim}.json"
        rec = {"measured": "—", "verdict": "not yet run"}
        if path.exists():
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, OSError) as e:  # not JSON, not UTF-8, a folder, unreadable
                raise ValueError(f"corrupt status record {path} ({e}); re-run chapter {chapter!r} to rewrite it") from None
            if not (isinstance(rec, dict) and isinstance(rec.get("measured"), str)
                    and rec.get("verdict") in VERDICTS[:-1]):
                raise ValueError(f"malformed status record {path}: it needs a 'measured' sentence and a "
                                 f"'verdict' (one of {', '.join(VERDICTS[:-1])}); re-run chapter "
                                 f"{chapter!r} to rewrite it")
        rows.append({"claim": claim, "chapter": chapter, "paper": paper,
                     "measured": rec["measured"], "verdict": rec["verdict"]})
    return pd.DataFrame(rows)
