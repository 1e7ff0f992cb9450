"""The reproduction status: one row per claim of the paper, our measurement, and a verdict.

Each chapter, when executed in the ``paper`` profile, calls :func:`record` for the claims it
tests; the record (``<store root>/status/<claim id>.json``) holds the measurement as a short
sentence with rounded numbers, the verdict and the code version; a claim whose runs are only
partly stored gets :func:`progress` instead (badge "not yet run", its runs so far as ours).  The *Reproduction status* page
renders :func:`table` as HTML (:func:`html_table`, :func:`tally`): every claim of :data:`CLAIMS`
(the brief's list, §4–5), with "not yet run" where no chapter has recorded it yet, its verdict as a
coloured badge, the paper's and our numbers in short, the full sentences in a dropdown and a link to
the section that measures it.  Every text is HTML-escaped, so no measured value (a ``|``, a ``<``, a
``$``) can break the table or be read as math.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from .runs import VERSION, git_commit
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
    "gpt2_wikitext": ("language_model", "GPT-2 trained from scratch on WikiText-2 with the modifications: perplexity slightly better, never worse."),
    "gpt2_pretrained": ("pretrained", "A pretrained GPT-2 fine-tuned on template tasks is far more sample-efficient than one trained from scratch; its heads show identity-like diagonals in W_K W_Qᵀ and W_V W_Oᵀ."),
}


# id -> (a reader-facing name, the paper's number in a few words, the section that measures it:
# "page#anchor", relative to chapters/; None where no chapter exists yet)
SHORT: dict[str, tuple[str, str, str | None]] = {
    "theory_mlp_unseen_weights": ("MLPs cannot use unseen symbols (theorem)", "unseen rows frozen; test loss ≥ 1", "mlp_failure.html#summary"),
    "theory_kernel_check_values": ("The kernel's Taylor coefficients", "two closed forms", "kernel.html#taylor-coefficients-by-computer-algebra"),
    "theory_kernel_nonsingular": ("The template matrix N is nonsingular", "N nonsingular, KQ helps", "kernel.html#the-template-matrix-n"),
    "theory_inverse_scaling": ("Why next-token copying scales inversely with d", "projection ~ n/d; VO copies", "next_token_theory.html#summary"),
    "mlp_trivial": ("The MLP stays at the trivial level", "test loss ≈ 1 for n ≤ 8k", "regression.html#verdicts"),
    "transformer_needs_data": ("The transformer needs thousands of samples", "n* ≈ 2k", "regression.html#verdicts"),
    "kq_sample_efficiency": ("The KQ identity saves data", "16–64× fewer samples", "regression.html#verdicts"),
    "vo_regression": ("The VO identity alone helps less", "n*(+VO) > n*(+KQ)", "regression.html#verdicts"),
    "rnn_lstm": ("RNN and LSTM lag behind", "n* > 2k", "regression.html#verdicts"),
    "mlp_xxt": ("An MLP given X Xᵀ generalizes", "learns with few samples", "regression.html#figure-6-an-mlp-given-xx-top-features"),
    "majority": ("Majority-k with both identities", "majority-6, -8 learned by 8k", "regression.html#figure-3-harder-tasks-aabb-vs-abab-and-majority-k"),
    "random_templates": ("Random templates: what makes a task hard", "4 axes, claimed signs", "regression.html#figure-4-random-template-tasks"),
    "hp_learning_rate": ("Learning rate", "best 3e-4…1e-3; 1e-2 fails", "regression.html#figure-5-hyper-parameters-of-the-plain-transformer"),
    "hp_batch_size": ("Batch size", "smaller helps at small n", "regression.html#figure-5-hyper-parameters-of-the-plain-transformer"),
    "hp_depth_heads": ("Depth and heads", "more helps", "regression.html#figure-5-hyper-parameters-of-the-plain-transformer"),
    "hp_embedding_dim": ("Embedding dimension", "larger hurts", "regression.html#figure-5-hyper-parameters-of-the-plain-transformer"),
    "kernel_regime": ("Training only the last layer", "no generalization at ×1", "regression.html#figure-8-training-only-the-last-layer"),
    "mimetic": ("Mimetic initialisation", "gain ≈ the KQ identity's", "regression.html#figure-7-mimetic-initialisation"),
    "copy_inverse_scaling": ("Copying: inverse scaling with d", "n needed ∝ d; VO: few", "next_token.html#the-copy-task-across-the-embedding-dimension"),
    "variable_binding": ("Variable binding", "plain ≈ 0.5; identities ≈ 0 by 16k", "next_token.html#variable-binding"),
    "gpt2_wikitext": ("GPT-2 on WikiText-2", "perplexity no worse", "language_model.html#the-main-runs-and-the-verdict"),
    "gpt2_pretrained": ("Pretrained GPT-2 on template tasks", "far more sample-efficient", "pretrained.html#verdict"),
}

# badge colours (background, text) of the four verdicts
COLOURS = {"reproduced": ("#1b7a3a", "#ffffff"), "partial": ("#b35c00", "#ffffff"),
           "not reproduced": ("#b3261e", "#ffffff"), "not yet run": ("#6b6b6b", "#ffffff")}


def grade(checks, partial=None) -> str:
    """The verdict of a claim tested by several checks (booleans, numpy's included): "reproduced"
    if every check holds, "partial" if some do, "not reproduced" if none do (or there are none).

    ``partial``, where given, replaces the second test: "partial" if any of *its* checks holds (for
    rules with a weaker bar for partial, e.g. a ratio ≥ 16 to reproduce but ≥ 2 for partial).
    Every verdict rule of :mod:`symlib.claims` goes through here.

    Counting is done here, one check at a time, because numpy booleans do not add up: ``np.True_ +
    np.True_`` is ``True`` (logical or), not 2.
    """
    held = [bool(c) for c in checks]
    if held and all(held):
        return "reproduced"
    weaker = held if partial is None else [bool(c) for c in partial]
    return "partial" if any(weaker) else "not reproduced"


def status_dir(root: str | Path | None = None) -> Path:
    return Path(root if root is not None else default_root()) / "status"


def record(claim: str, measured: str, verdict: str, root: str | Path | None = None,
           ours: str | None = None) -> Path:
    """Record our measurement for ``claim`` (an id of :data:`CLAIMS`) with a verdict; ``ours`` is the
    measurement in a few words (the status page's "ours" column; by default the start of
    ``measured``, see :func:`short`)."""
    if claim not in CLAIMS:
        raise ValueError(f"unknown claim {claim!r}; allowed: {', '.join(CLAIMS)}")
    if verdict not in VERDICTS[:-1]:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS[:-1])}; got {verdict!r}")
    if not isinstance(measured, str) or not measured.strip():
        raise ValueError("measured must be a non-empty sentence with the numbers we measured")
    if ours is not None and (not isinstance(ours, str) or not ours.strip()):
        raise ValueError("ours must be a non-empty short text, or None")
    chapter, paper = CLAIMS[claim]
    rec = {"claim": claim, "chapter": chapter, "paper": paper, "measured": measured.strip(),
           "verdict": verdict, "symlib": VERSION}
    if ours is not None:
        rec["ours"] = ours.strip()
    return _write(status_dir(root) / f"{claim}.json", rec, ("paper", "measured", "verdict", "ours"))


def _write(path: Path, rec: dict, same: tuple[str, ...]) -> Path:
    """Write status record ``rec`` to ``path`` with the current commit, unless the stored record
    agrees on the keys ``same``: unchanged findings keep their record (and the commit that first
    wrote it); a corrupt or malformed record is simply rewritten."""
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            if all(old.get(k) == rec.get(k) for k in same):
                return path
        except (ValueError, AttributeError):
            pass
    atomic_write_text(path, json.dumps({**rec, "git_commit": git_commit()}, indent=1, ensure_ascii=False) + "\n")
    return path


def progress(claim: str, done: int, total: int, so_far: str, root: str | Path | None = None) -> Path:
    """Record that ``claim`` is measured in part: ``done`` of its ``total`` runs are stored and its
    verdict waits for the rest.  The status page keeps the "not yet run" badge and shows "``done`` of
    ``total`` runs" as ours, with ``so_far`` (what the stored runs show) in the details.  A later
    :func:`record` of the claim replaces it."""
    if claim not in CLAIMS:
        raise ValueError(f"unknown claim {claim!r}; allowed: {', '.join(CLAIMS)}")
    if not (isinstance(done, int) and isinstance(total, int) and 0 <= done < total):
        raise ValueError(f"progress needs 0 <= done < total runs (a complete claim is graded with record()); "
                         f"got done={done!r}, total={total!r}")
    if not isinstance(so_far, str) or not so_far.strip():
        raise ValueError("so_far must be a non-empty sentence saying what the stored runs show")
    chapter, paper = CLAIMS[claim]
    rec = {"claim": claim, "chapter": chapter, "paper": paper, "measured": f"In progress ({done} of {total} runs): "
           + so_far.strip(), "verdict": "not yet run", "ours": f"{done} of {total} runs so far", "progress": [done, total],
           "symlib": VERSION}
    return _write(status_dir(root) / f"{claim}.json", rec, ("paper", "measured", "verdict", "progress"))


def short(measured: str, limit: int = 60) -> str:
    """The first clause of a measured sentence (up to its first '; '), cut to ``limit`` characters
    at a word boundary: the "ours" column of a record that gives none."""
    text = measured.strip().split("; ", 1)[0].rstrip(".")
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " …"
    return text


def table(root: str | Path | None = None) -> pd.DataFrame:
    """Every claim with our measurement and verdict ("not yet run" where none is recorded), its
    reader-facing name, the paper's and our numbers in short and the section that measures it."""
    rows = []
    for claim, (chapter, paper) in CLAIMS.items():
        path = status_dir(root) / f"{claim}.json"
        rec = {"measured": "—", "verdict": "not yet run"}
        if path.exists():
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, OSError) as e:  # not JSON, not UTF-8, a folder, unreadable
                raise ValueError(f"corrupt status record {path} ({e}); re-run chapter {chapter!r} to rewrite it") from None
            in_progress = isinstance(rec, dict) and rec.get("verdict") == "not yet run" and "progress" in rec
            if not (isinstance(rec, dict) and isinstance(rec.get("measured"), str)
                    and (rec.get("verdict") in VERDICTS[:-1] or in_progress)):
                raise ValueError(f"malformed status record {path}: it needs a 'measured' sentence and a "
                                 f"'verdict' (one of {', '.join(VERDICTS[:-1])}); re-run chapter "
                                 f"{chapter!r} to rewrite it")
            if rec.get("ours") is not None and not (isinstance(rec["ours"], str) and rec["ours"].strip()):
                raise ValueError(f"malformed status record {path}: its 'ours' must be a non-empty text; "
                                 f"re-run chapter {chapter!r} to rewrite it")
        title, paper_short, link = SHORT[claim]
        ours = rec.get("ours") or (short(rec["measured"]) if rec["verdict"] != "not yet run" else "—")
        rows.append({"claim": claim, "chapter": chapter, "paper": paper,
                     "measured": rec["measured"], "verdict": rec["verdict"],
                     "title": title, "paper_short": paper_short, "ours": ours, "link": link})
    return pd.DataFrame(rows)


def badge(verdict: str) -> str:
    """A verdict as a coloured badge (an HTML ``<span>`` carrying ``data-verdict``)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}; got {verdict!r}")
    bg, fg = COLOURS[verdict]
    return (f'<span class="verdict-badge" data-verdict="{verdict}" style="display:inline-block;'
            f'padding:0.1em 0.55em;border-radius:0.8em;background:{bg};color:{fg};font-size:0.85em;'
            f'font-weight:600;white-space:nowrap">{verdict}</span>')


def tally(frame: pd.DataFrame) -> str:
    """The count of each verdict as a row of badges (HTML), in the order of :data:`VERDICTS`."""
    counts = frame["verdict"].value_counts()
    items = [f'<span class="verdict-count" data-verdict="{v}" style="margin-right:1em">{badge(v)} '
             f'<b>{int(counts.get(v, 0))}</b></span>' for v in VERDICTS]
    return f'<p class="verdict-tally">{"".join(items)}</p>'


def _text(text: str) -> str:
    """Escaped for HTML, and kept away from MathJax (a measured ``$`` is not math)."""
    return f'<span class="tex2jax_ignore mathjax_ignore">{html.escape(text)}</span>'


def html_table(frame: pd.DataFrame, base: str = "") -> str:
    """The status table as HTML: claim (linked to its section), verdict badge, the paper's and our
    numbers in short, and the paper's claim and our measurement in full in a dropdown.

    ``base`` is prefixed to each link (``""`` from a page in ``chapters/``).  Every text is escaped.
    """
    rows = []
    for r in frame.itertuples(index=False):
        name = _text(r.title)
        if isinstance(r.link, str) and r.link:  # pandas may hold a missing link as NaN
            name = f'<a href="{html.escape(base + r.link, quote=True)}">{name}</a>'
        details = (f'<details><summary>details</summary><p><b>Paper:</b> {_text(r.paper)}</p>'
                   f'<p><b>We measured:</b> {_text(r.measured)}</p>'
                   f'<p style="font-size:0.8em;color:#666">claim id <code>{html.escape(r.claim)}</code></p></details>')
        rows.append(f'<tr class="claim-row" data-claim="{html.escape(r.claim, quote=True)}"><td>{name}</td>'
                    f'<td>{badge(r.verdict)}</td><td>{_text(r.paper_short)}</td><td>{_text(r.ours)}</td>'
                    f'<td>{details}</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("claim", "verdict", "paper", "ours", ""))
    return (f'<table class="status-table table" style="width:100%;font-size:0.9em">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def verdict_list(frame: pd.DataFrame, verdicts, base: str = "") -> str:
    """The claims of ``frame`` with one of ``verdicts``, as an HTML list: name (linked), badge, and
    our number in short ('—' lists nothing)."""
    items = []
    for r in frame[frame["verdict"].isin(list(verdicts))].itertuples(index=False):
        name = _text(r.title)
        if isinstance(r.link, str) and r.link:
            name = f'<a href="{html.escape(base + r.link, quote=True)}">{name}</a>'
        ours = "" if r.ours == "—" else f" — {_text(r.ours)}"
        items.append(f'<li class="claim-item" data-claim="{html.escape(r.claim, quote=True)}">'
                     f'{badge(r.verdict)} {name}{ours}</li>')
    return f'<ul class="verdict-list">{"".join(items)}</ul>' if items else "<p>none</p>"
