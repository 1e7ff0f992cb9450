"""The task registry: every template task of the paper (brief §2), by name.

>>> get_task("aba_abb")
>>> get_task("majority", k=6)
>>> get_task("random_templates", r=4, length=5, n_wildcards=3, n_regular=1, seed=0)

Each task carries a ``spec`` (name + parameters) that rebuilds it with :func:`from_spec`; specs
are what run configs store and hash.  A task of your own is one line with
:func:`symlib.templates.make_task`.  Used by every chapter; shown in *Template tasks*.
"""

from __future__ import annotations

import itertools
import random

from .checks import int_in
from .templates import GREEK, TemplateTask, canonical, make_task

# Which template of a pair gets +1 is not known from the paper [ours]: the first listed.

# Size limits, checked before anything is allocated: a task is held in memory template by
# template, and drawing r templates by rejection needs r <= the number that exist.  The paper's
# tasks are far below them (majority-8: 128 templates; random templates: r <= 15, length <= 20).
MAX_TEMPLATES = 4096
MAX_LENGTH = 64


def same_different() -> TemplateTask:
    """``αα → +1``, ``αβ → −1``."""
    return make_task({"αα": 1, "αβ": -1}, spec={"name": "same_different"})


def aba_abb() -> TemplateTask:
    """``αβα → +1``, ``αββ → −1``."""
    return make_task({"αβα": 1, "αββ": -1}, spec={"name": "aba_abb"})


def aabb_abab() -> TemplateTask:
    """``ααββ → +1``, ``αβαβ → −1``."""
    return make_task({"ααββ": 1, "αβαβ": -1}, spec={"name": "aabb_abab"})


def majority(k: int) -> TemplateTask:
    """Length-``k`` strings over {α, β} starting with α (2^(k−1) templates); +1 iff α holds a
    strict majority of positions.  [recon/ours]  ``majority(2)`` is same/different."""
    int_in("k", k, low=2, high=MAX_TEMPLATES.bit_length(),
               why=f"majority-k has 2^(k-1) templates, at most {MAX_TEMPLATES} templates")
    templates = {}
    for rest in itertools.product("αβ", repeat=k - 1):
        z = "α" + "".join(rest)
        templates[z] = 1 if z.count("α") > k / 2 else -1
    return make_task(templates, spec={"name": "majority", "k": k})


def random_templates(r: int, length: int, n_wildcards: int, n_regular: int = 0, seed: int = 0) -> TemplateTask:
    """``r`` random templates of ``length`` symbols, each drawn uniformly from ``n_wildcards``
    wildcards and ``n_regular`` regular tokens (``R0``, ``R1``, …), random ±1 labels, equivalent
    templates rejected (the authors' generator; defaults of the sweep are [recon])."""
    int_in("r", r, low=1, high=MAX_TEMPLATES, why="templates per task")
    int_in("length", length, low=1, high=MAX_LENGTH)
    int_in("n_wildcards", n_wildcards, low=1, high=len(GREEK))
    int_in("n_regular", n_regular, low=0, high=MAX_TEMPLATES)
    exist = count_templates(length, n_wildcards, n_regular)
    if r > exist:
        raise ValueError(f"only {exist} pairwise non-equivalent templates exist of length {length} over "
                         f"{n_wildcards} wildcards and {n_regular} regular tokens; got r = {r}")
    symbols = list(GREEK[:n_wildcards]) + [f"R{i}" for i in range(n_regular)]
    rng = random.Random(seed)
    found: dict = {}
    for _ in range(1000 * r):
        z = tuple(rng.choice(symbols) for _ in range(length))
        found.setdefault(canonical(z), z)
        if len(found) == r:
            break
    else:
        raise ValueError(
            f"could not draw {r} pairwise non-equivalent templates of length {length} over "
            f"{n_wildcards} wildcards and {n_regular} regular tokens; use fewer templates or a "
            "longer / richer template")
    templates = [(z, rng.choice((1, -1))) for z in found.values()]
    spec = {"name": "random_templates", "r": r, "length": length,
            "n_wildcards": n_wildcards, "n_regular": n_regular, "seed": seed}
    return make_task(templates, spec=spec)


def count_templates(length: int, n_wildcards: int, n_regular: int) -> int:
    """How many pairwise non-equivalent templates of ``length`` symbols exist over ``n_wildcards``
    wildcards and ``n_regular`` regular tokens (canonical forms: wildcards numbered by first
    appearance).  Dynamic programming over the number of wildcards used so far."""
    ways = {0: 1}  # wildcards used so far -> number of canonical prefixes
    for _ in range(length):
        nxt: dict[int, int] = {}
        for used, count in ways.items():
            nxt[used] = nxt.get(used, 0) + count * (n_regular + used)  # a regular token or a used wildcard
            if used < n_wildcards:                                       # a new wildcard
                nxt[used + 1] = nxt.get(used + 1, 0) + count
        ways = nxt
    return sum(ways.values())


def programs() -> TemplateTask:
    """The introduction's example: ``α = 1 ; β = -1 ; print ( α ) → +1``, ``… print ( β ) → −1``."""
    return make_task({"α = 1 ; β = -1 ; print ( α )": 1,
                      "α = 1 ; β = -1 ; print ( β )": -1}, spec={"name": "programs"})


def copy() -> TemplateTask:
    """Next-token: ``print ( α ) → α`` — output a symbol never seen in training."""
    return make_task({"print ( α )": "α"}, kind="next_token", spec={"name": "copy"})


def variable_binding() -> TemplateTask:
    """Next-token: ``α = γ ; β = δ ; print ( α ) → γ`` and ``… print ( β ) → δ``."""
    return make_task({"α = γ ; β = δ ; print ( α )": "γ",
                      "α = γ ; β = δ ; print ( β )": "δ"},
                     kind="next_token", spec={"name": "variable_binding"})


REGISTRY = {
    "same_different": same_different,
    "aba_abb": aba_abb,
    "aabb_abab": aabb_abab,
    "majority": majority,
    "random_templates": random_templates,
    "programs": programs,
    "copy": copy,
    "variable_binding": variable_binding,
}


def get_task(name: str, **params) -> TemplateTask:
    """A registered task by name, e.g. ``get_task("majority", k=4)``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(REGISTRY)} (or 'custom' via make_task)")
    try:
        return REGISTRY[name](**params)
    except TypeError as e:  # wrong or missing parameters
        raise ValueError(f"bad parameters {params} for task {name!r}: {e}") from None


def from_spec(spec: dict) -> TemplateTask:
    """Rebuild a task from its ``spec`` (as stored in a run config)."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name == "custom":
        return make_task(list(zip(spec["templates"], spec["labels"])), kind=spec["kind"], probs=spec["probs"])
    return get_task(name, **spec)


# ----------------------------------------------------------------------------- labels

TASK_NAMES = {"same_different": "same/different", "aba_abb": "ABA vs ABB", "aabb_abab": "AABB vs ABAB"}


def task_label(task) -> str:
    """The one name of a task in frames, plots and chapters: ``ABA vs ABB``, ``majority-6``,
    ``r=4, L=5, |W|=3, |R|=0`` …  ``task``: a spec dict, a registry name or a ``TemplateTask``."""
    spec = task.spec if isinstance(task, TemplateTask) else {"name": task} if isinstance(task, str) else task
    name = spec["name"]
    if name in TASK_NAMES:
        return TASK_NAMES[name]
    if name == "majority":
        return f"majority-{spec['k']}"
    if name == "random_templates":
        return f"r={spec['r']}, L={spec['length']}, |W|={spec['n_wildcards']}, |R|={spec['n_regular']}"
    params = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
    return f"{name}({params})" if params else name
