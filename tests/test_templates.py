"""The formalism: templates, matching, equivalence, the registry (symlib.templates, symlib.tasks)."""

import pytest

from symlib import data_diversity, from_spec, get_task, make_task, matches
from symlib.tasks import REGISTRY
from symlib.templates import canonical, parse_template, substitute, wildcards


def test_parse_characters_and_words():
    assert parse_template("αβα") == ("α", "β", "α")
    assert parse_template("print ( α )") == ("print", "(", "α", ")")
    assert wildcards(parse_template("α = γ ; β = δ ; print ( α )")) == ("α", "γ", "β", "δ")


def test_substitution_is_injective():
    assert substitute(("α", "β", "α"), {"α": "x", "β": "y"}) == ("x", "y", "x")
    with pytest.raises(ValueError, match="injective"):
        substitute(("α", "β"), {"α": "x", "β": "x"})
    with pytest.raises(ValueError, match="no image"):
        substitute(("α", "β"), {"α": "x"})


@pytest.mark.parametrize("x, z, ok", [
    ("xyx", "αβα", True),
    ("xxx", "αβα", False),   # α and β would share an image: not injective
    ("xyy", "αβα", False),   # equality pattern differs
    ("xy", "αβα", False),    # length
    ("=x", "=α", True),      # regular token kept
    ("==", "=α", False),     # image collides with the template's regular token
    ("+x", "=α", False),     # regular token differs
])
def test_matching_rule(x, z, ok):
    assert matches(tuple(x), tuple(z)) is ok


def test_equivalence_is_renaming():
    assert canonical(tuple("αβα")) == canonical(tuple("γδγ")) != canonical(tuple("αββ"))
    assert canonical(("α", "=", "β")) != canonical(("α", "+", "β"))
    with pytest.raises(ValueError, match="equivalent"):
        make_task({"αβα": 1, "βγβ": -1})


def test_one_line_custom_task_and_spec_round_trip():
    task = make_task({"αα": 1, "αβ": -1})
    assert task.kind == "regression" and task.labels == (1.0, -1.0) and task.length == 2
    again = from_spec(task.spec)
    assert again.templates == task.templates and again.labels == task.labels


@pytest.mark.parametrize("templates, kind, message", [
    ({"αα": 1, "αβγ": -1}, "regression", "one length"),
    ({}, "regression", "at least one template"),
    ({"αα": "x"}, "regression", "must be numbers"),
    ({"αα": -1}, "classification", "integers >= 0"),
    ({"print ( α )": "β"}, "next_token", "not in"),
    ({"print ( α )": "x"}, "next_token", "not in"),
    ({"αα": 1}, "ranking", "unknown label kind"),
])
def test_bad_tasks_raise_clear_errors(templates, kind, message):
    with pytest.raises(ValueError, match=message):
        make_task(templates, kind=kind)


def test_registry_holds_every_task_of_the_paper():
    assert set(REGISTRY) == {"same_different", "aba_abb", "aabb_abab", "majority", "random_templates",
                             "programs", "copy", "variable_binding"}
    for name in REGISTRY:
        params = {"majority": {"k": 4}, "random_templates": {"r": 3, "length": 4, "n_wildcards": 2}}
        task = get_task(name, **params.get(name, {}))
        assert from_spec(task.spec).templates == task.templates


@pytest.mark.parametrize("k", [2, 4, 6, 8])
def test_majority(k):
    task = get_task("majority", k=k)
    assert len(task.templates) == 2 ** (k - 1)
    for z, y in zip(task.templates, task.labels):
        assert z[0] == "α" and y == (1.0 if z.count("α") > k / 2 else -1.0)
    if k == 2:
        assert dict(zip(task.templates, task.labels)) == dict(zip(get_task("same_different").templates,
                                                               get_task("same_different").labels))


def test_constant_loss_is_the_label_variance():
    assert get_task("same_different").constant_loss == 1.0
    three_to_one = make_task({"αααβ": 1, "ααβα": 1, "αβαα": 1, "αβββ": -1})
    assert three_to_one.constant_loss == pytest.approx(1 - 0.5 ** 2)  # E[y] = 0.5
    assert make_task({"αβ": 1, "αα": -1}, probs=[0.9, 0.1]).constant_loss == pytest.approx(1 - 0.8 ** 2)
    with pytest.raises(ValueError, match="regression"):
        get_task("copy").constant_loss


def test_label_from_regular_positions():
    assert not get_task("aba_abb").label_from_regular  # wildcards only: equality decides
    assert make_task({"R α α": 1, "α R β": -1}).label_from_regular  # where R sits decides
    assert not make_task({"R α α": 1, "R α β": -1, "α R β": -1}).label_from_regular
    assert make_task({"αα": 1, "αβ": 1}).label_from_regular  # one label: nothing to reason about


def test_random_templates_are_deterministic_and_distinct():
    a = get_task("random_templates", r=6, length=5, n_wildcards=3, n_regular=1, seed=7)
    b = get_task("random_templates", r=6, length=5, n_wildcards=3, n_regular=1, seed=7)
    assert a.templates == b.templates and a.labels == b.labels
    assert len({canonical(z) for z in a.templates}) == 6
    with pytest.raises(ValueError, match="only 2 pairwise non-equivalent templates exist"):
        get_task("random_templates", r=5, length=2, n_wildcards=2)  # only αα, αβ exist


def test_next_token_tasks():
    vb = get_task("variable_binding")
    assert vb.kind == "next_token" and vb.labels == ("γ", "δ")
    assert get_task("copy").labels == ("α",)


def test_unknown_task_and_bad_parameters():
    with pytest.raises(ValueError, match="unknown task 'nope'; allowed: same_different"):
        get_task("nope")
    with pytest.raises(ValueError, match="k must be an integer in 2..13"):
        get_task("majority", k=0)
    with pytest.raises(ValueError, match="bad parameters"):
        get_task("majority", kk=3)


def test_data_diversity():
    assert data_diversity(get_task("aba_abb"), 1000) == 500
    assert data_diversity(get_task("variable_binding"), 400) == 100
    with pytest.raises(ValueError, match="too small"):
        data_diversity(get_task("variable_binding"), 3)
