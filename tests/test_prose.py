"""Numbers as the chapters' sentences quote them (symlib.prose)."""

import math

import pytest

from symlib import prose


def test_losses_read_at_every_scale():
    assert [prose.fl(x) for x in (0.349, 0.0171, 0.0042, 8.4e-6)] == ["0.35", "0.017", "0.004", "8e-6"]
    assert prose.f2(0.3449) == "0.34"


def test_sci_rounds_up_so_that_the_prose_can_say_at_most():
    assert prose.sci(1.21e-3) == "1.3e-3" and prose.sci(1.2e-3) == "1.2e-3" and prose.sci(0.0451) == "4.6e-2"
    with pytest.raises(ValueError, match="positive"):
        prose.sci(0.0)


def test_spans_listings_ratios_and_seeds():
    assert prose.span([0.12, 0.19, 0.15]) == "0.12–0.19" and prose.span([0.121, 0.119]) == "0.12"
    assert prose.listing(["a", "b", "c"]) == "a, b and c" and prose.listing(["a"]) == "a"
    assert prose.times(5.514) == "×5.51" and prose.times(math.nan) == "—"
    assert prose.seed_span([2, 0, 1, 1]) == "seeds 0–2" and prose.seed_span([0, 2]) == "seeds 0, 2"
    assert prose.seed_span([3]) == "seed 3"
    with pytest.raises(ValueError, match="at least one"):
        prose.span([])


def test_glue_words_glues_every_key_or_a_dash_for_each(monkeypatch):
    glued = {}
    monkeypatch.setattr(prose, "glue_text", lambda name, text: glued.__setitem__(name, text))
    prose.glue_words({"a": "1", "b": "2"}, "a b", prefix="reg-")
    assert glued == {"reg-a": "1", "reg-b": "2"}
    prose.glue_words({}, "a b", prefix="x-")
    assert glued["x-a"] == glued["x-b"] == "—"
    with pytest.raises(KeyError, match="keys differ"):
        prose.glue_words({"a": "1"}, "a b", prefix="reg-")


def test_integer_or_a_dash():
    assert prose.integer(512.0) == "512" and prose.integer(math.nan) == "—"
