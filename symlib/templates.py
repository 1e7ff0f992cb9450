"""Template tasks: the formalism of the paper's Section 2 (book chapter *Template tasks*).

A **template** is a string over regular tokens and **wildcards**.  A wildcard is written as a
single lower-case Greek letter (α, β, γ, ...); every other symbol is a regular token.  A
**substitution** ``s`` maps the wildcards injectively to tokens of an alphabet that is disjoint
from the regular tokens, so a string ``sub(z, s)`` matches exactly one template of a task whose
templates are pairwise non-equivalent.

Templates are written either as a sequence of symbols, or as a string: a string with spaces is
split on whitespace (``"α = 1 ; print ( α )"``), a string without spaces into characters
(``"αβα"``).

Everything here is plain Python over short symbol tuples; turning a task into tensors with
disjoint train / validation / test alphabets lives in :mod:`symlib.data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

GREEK = "αβγδεζηθικλμνξοπρστυφχψω"
LABEL_KINDS = ("regression", "classification", "next_token")

Symbol = str
TemplateLike = str | Sequence[str]


def is_wildcard(symbol: Symbol) -> bool:
    """A wildcard is a single lower-case Greek letter."""
    return len(symbol) == 1 and symbol in GREEK


def parse_template(z: TemplateLike) -> tuple[Symbol, ...]:
    """``"αβα"`` -> ``('α','β','α')``; ``"α = 1 ; print ( α )"`` -> split on spaces."""
    if isinstance(z, str):
        symbols = tuple(z.split()) if " " in z.strip() else tuple(z)
    else:
        symbols = tuple(z)
    if not symbols:
        raise ValueError("a template must hold at least one symbol; got an empty template")
    for s in symbols:
        if not isinstance(s, str) or not s or any(c.isspace() for c in s):
            raise ValueError(f"template symbols must be non-empty strings without spaces; got {s!r}")
    return symbols


def wildcards(z: Sequence[Symbol]) -> tuple[Symbol, ...]:
    """Wildcards of ``z`` in order of first appearance."""
    return tuple(dict.fromkeys(s for s in z if is_wildcard(s)))


def regular_tokens(z: Sequence[Symbol]) -> tuple[Symbol, ...]:
    """Regular tokens of ``z`` in order of first appearance."""
    return tuple(dict.fromkeys(s for s in z if not is_wildcard(s)))


def canonical(z: Sequence[Symbol]) -> tuple[Symbol | int, ...]:
    """Canonical form: wildcards renamed 0, 1, 2, ... by first appearance, regular tokens kept.

    Two templates are *equivalent* (one is a renaming of the other) iff their canonical forms
    are equal: same regular tokens at the same positions and the same equality pattern.
    """
    rename = {w: i for i, w in enumerate(wildcards(z))}
    return tuple(rename.get(s, s) for s in z)


def substitute(z: Sequence[Symbol], s: Mapping[Symbol, Symbol]) -> tuple[Symbol, ...]:
    """``sub(z, s)``: replace every wildcard by its image, keep regular tokens."""
    missing = [w for w in wildcards(z) if w not in s]
    if missing:
        raise ValueError(f"substitution has no image for wildcard(s) {missing} of template {''.join(z)!r}")
    images = [s[w] for w in wildcards(z)]
    if len(set(images)) != len(images):
        raise ValueError(f"a substitution must be injective; got images {images}")
    return tuple(s.get(t, t) if is_wildcard(t) else t for t in z)


def matches(x: Sequence[Symbol], z: Sequence[Symbol]) -> bool:
    """Does ``x = sub(z, s)`` for an injective ``s`` whose images avoid ``z``'s regular tokens?"""
    if len(x) != len(z):
        return False
    image: dict[Symbol, Symbol] = {}
    regular = set(regular_tokens(z))
    for xi, zi in zip(x, z):
        if not is_wildcard(zi):
            if xi != zi:
                return False
        elif image.setdefault(zi, xi) != xi:
            return False
    values = list(image.values())
    return len(set(values)) == len(values) and not (set(values) & regular)


@dataclass(frozen=True)
class TemplateTask:
    """A distribution over templates with a label per template (paper, Section 2).

    ``templates``   tuple of templates (tuples of symbols), all of one length, none equivalent.
    ``labels``      one label per template: a float (regression), an int class (classification)
                    or a symbol of the template (next-token; a wildcard's target is its image).
    ``kind``        one of ``LABEL_KINDS``.
    ``probs``       template probabilities (uniform by default).
    ``spec``        the JSON-able recipe that rebuilds the task (``symlib.tasks.from_spec``); it
                    is part of every run's config hash.
    """

    templates: tuple[tuple[Symbol, ...], ...]
    labels: tuple
    kind: str
    probs: tuple[float, ...]
    spec: dict = field(compare=False, hash=False)

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def length(self) -> int:
        return len(self.templates[0])

    @property
    def n_wildcards(self) -> int:
        """Largest number of distinct wildcards in one template."""
        return max(len(wildcards(z)) for z in self.templates)

    @property
    def regular(self) -> tuple[Symbol, ...]:
        """All regular tokens of the task (they get the first token ids)."""
        return tuple(dict.fromkeys(t for z in self.templates for t in regular_tokens(z)))

    @property
    def constant_loss(self) -> float:
        """Test MSE of the best constant prediction, E[y] = sum_i p_i y_i: what a regression model
        reaches with no reasoning at all — 1 for balanced ±1 labels, less for unbalanced ones
        (figure 4's random labels, chapter *Regression experiments*)."""
        if self.kind != "regression":
            raise ValueError(f"constant_loss is defined for regression tasks; this task is {self.kind!r}")
        mean = sum(p * y for p, y in zip(self.probs, self.labels))
        return sum(p * (y - mean) ** 2 for p, y in zip(self.probs, self.labels))

    @property
    def label_from_regular(self) -> bool:
        """Whether the label is a function of where the regular tokens sit (wildcards masked).
        Then a model can label unseen strings by those positions alone, with no equality
        reasoning; a task with one label is the extreme case (figure 4, chapter *Regression
        experiments*)."""
        label_of_mask: dict = {}
        for z, y in zip(self.templates, self.labels):
            mask = tuple(None if is_wildcard(s) else s for s in z)
            if label_of_mask.setdefault(mask, y) != y:
                return False
        return True

    @property
    def other_label_positions(self) -> tuple[tuple[int, ...], ...]:
        """Per template, the positions holding the label of *another* template (next-token).

        In variable binding, ``α = γ ; β = δ ; print ( α ) → γ``, the other template's label δ
        sits at position 6: a prediction equal to the token there is "the value of the wrong
        variable", the error the paper expects on the way to learning the task (chapter
        *Next-token experiments*).  Empty tuples for a task with one template or other kinds."""
        if self.kind != "next_token":
            return tuple(() for _ in self.templates)
        return tuple(tuple(p for p, s in enumerate(z)
                           if s != y and any(s == y2 for y2 in self.labels if y2 != y))
                     for z, y in zip(self.templates, self.labels))

    @property
    def n_classes(self) -> int:
        return 1 + max(self.labels) if self.kind == "classification" else 0

    def __repr__(self) -> str:
        rows = ", ".join(f"{' '.join(z)}→{y}" for z, y in zip(self.templates, self.labels))
        return f"TemplateTask({self.name}, {self.kind}: {rows})"


def make_task(
    templates: Mapping[TemplateLike, object] | Sequence[tuple[TemplateLike, object]],
    kind: str = "regression",
    probs: Sequence[float] | None = None,
    spec: dict | None = None,
) -> TemplateTask:
    """Build and validate a task from ``{template: label}``.

    >>> make_task({"αα": 1, "αβ": -1})      # same/different, in one line

    Raises ``ValueError`` for: an unknown label kind, no templates, templates of unequal
    length, equivalent templates, non-numeric regression labels, negative or non-integer classes,
    a next-token label that is not a token of its template, bad probabilities.
    """
    if kind not in LABEL_KINDS:
        raise ValueError(f"unknown label kind {kind!r}; allowed: {', '.join(LABEL_KINDS)}")
    items = list(templates.items()) if isinstance(templates, Mapping) else list(templates)
    if not items:
        raise ValueError("a task needs at least one template")
    zs = tuple(parse_template(z) for z, _ in items)
    raw_labels = [y for _, y in items]

    lengths = sorted({len(z) for z in zs})
    if len(lengths) > 1:
        raise ValueError(f"all templates of a task must have one length; got lengths {lengths}")
    seen: dict = {}
    for z in zs:
        c = canonical(z)
        if c in seen:
            raise ValueError(
                f"templates {' '.join(seen[c])!r} and {' '.join(z)!r} are equivalent (one renames "
                "the other); a task holds at most one template of each equivalence class")
        seen[c] = z

    labels: list = []
    for z, y in zip(zs, raw_labels):
        if kind == "regression":
            if isinstance(y, bool) or not isinstance(y, (int, float)):
                raise ValueError(f"regression labels must be numbers; got {y!r} for {' '.join(z)!r}")
            labels.append(float(y))
        elif kind == "classification":
            if isinstance(y, bool) or not isinstance(y, int) or y < 0:
                raise ValueError(f"classification labels must be integers >= 0; got {y!r} for {' '.join(z)!r}")
            labels.append(y)
        else:
            if y not in z:
                raise ValueError(
                    f"a next-token label must be a token of its template; {y!r} is not in "
                    f"{' '.join(z)!r} (allowed: {', '.join(dict.fromkeys(z))})")
            labels.append(y)

    if probs is None:
        probs = [1.0 / len(zs)] * len(zs)
    probs = [float(p) for p in probs]
    if len(probs) != len(zs) or any(p < 0 for p in probs) or abs(sum(probs) - 1) > 1e-9:
        raise ValueError(f"probs must be {len(zs)} non-negative numbers summing to 1; got {probs}")

    if spec is None:  # a template is stored as its string when that parses back to it (the
        # hash of existing configs), else as its list of symbols: ("yes",) is not "yes" = y e s
        spec = {"name": "custom", "kind": kind, "labels": labels, "probs": probs,
                "templates": [" ".join(z) if parse_template(" ".join(z)) == z else list(z) for z in zs]}
    return TemplateTask(zs, tuple(labels), kind, tuple(probs), spec)


def data_diversity(task: TemplateTask, alphabet_size: int) -> float:
    """Data diversity ρ for uniform injective substitutions from ``alphabet_size`` tokens.

    [recon] ρ is the inverse of the largest probability that one given token is used by a
    substitution.  Under a template with ``w`` wildcards drawn uniformly without replacement, a
    token is used with probability ``w / alphabet_size``, so ``ρ = alphabet_size / max_z w(z)``
    (averaging over templates with ``probs`` would give the same order).
    """
    if alphabet_size < task.n_wildcards:
        raise ValueError(
            f"an alphabet of {alphabet_size} tokens is too small for an injective substitution "
            f"of {task.n_wildcards} wildcards; use at least {task.n_wildcards}")
    w = max(1, task.n_wildcards)
    return alphabet_size / w
