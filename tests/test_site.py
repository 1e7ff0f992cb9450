"""What a reader sees on the built site (issue 19): the status page's verdicts, its links, and no raw
TeX outside math.  The site is built once per session (``site_html`` in conftest.py)."""

import re
from pathlib import Path

import pandas as pd
import pytest
from bs4 import BeautifulSoup

from symlib import book, status


def soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def pages(html: Path):
    """The chapters' pages of the built site."""
    for notebook in book.chapters().values():
        yield html / notebook.relative_to(book.REPO).with_suffix(".html")


# ----------------------------------------------------------------------------- the status table, unbuilt


def test_html_table_escapes_every_text():
    """A measured value with a '|', a tag or a '$' cannot break the table or become math."""
    frame = status.table("/nonexistent").head(2).copy()
    frame["measured"] = ["|E[yF]| ≤ 0.01 | <b>bold</b> $x$", "a | b"]
    frame["ours"] = ["| x |", "<i>y</i>"]
    frame["verdict"] = ["partial", "reproduced"]
    page = BeautifulSoup(status.html_table(frame), "html.parser")
    rows = page.select("tr.claim-row")
    assert len(rows) == 2 and not page.find("b", string="bold") and not page.find("i")
    for row, verdict in zip(rows, frame["verdict"]):
        cells = row.find_all("td", recursive=False)
        assert len(cells) == 5 and cells[1].get_text(strip=True) == verdict
        assert cells[1].select_one(".verdict-badge")["data-verdict"] == verdict
    assert "|E[yF]| ≤ 0.01 | <b>bold</b> $x$" in rows[0].get_text()
    assert rows[0].select_one(".mathjax_ignore") is not None  # a '$' in a value is not math


def test_tally_counts_every_verdict():
    frame = pd.DataFrame({"verdict": ["reproduced", "reproduced", "partial"]})
    counts = {s["data-verdict"]: int(s.b.get_text()) for s in
              BeautifulSoup(status.tally(frame), "html.parser").select(".verdict-count")}
    assert counts == {"reproduced": 2, "partial": 1, "not reproduced": 0, "not yet run": 0}


def test_every_claim_has_a_short_form_and_a_badge_colour():
    assert set(status.SHORT) == set(status.CLAIMS) and set(status.COLOURS) == set(status.VERDICTS)
    with pytest.raises(ValueError, match="verdict must be one of"):
        status.badge("maybe")


# ----------------------------------------------------------------------------- the built site


def test_status_page_shows_one_verdict_badge_per_claim(site_html):
    page = soup(site_html / "chapters" / "status.html")
    rows = page.select("tr.claim-row")
    assert [r["data-claim"] for r in rows] == list(status.CLAIMS)
    seen = []
    for row in rows:
        cells = row.find_all("td", recursive=False)
        badge = cells[1].select_one(".verdict-badge")  # the verdict is the second column
        assert badge is not None, f"{row['data-claim']}: no verdict badge in the second column"
        verdict = badge.get_text(strip=True)
        assert verdict in status.VERDICTS and badge["data-verdict"] == verdict, f"{row['data-claim']}: {verdict!r}"
        seen.append(verdict)
    tally = {s["data-verdict"]: int(s.b.get_text()) for s in page.select(".verdict-tally .verdict-count")}
    assert tally == {v: seen.count(v) for v in status.VERDICTS}  # the tally at the top matches the rows
    assert page.select_one(".verdict-tally").sourceline < rows[0].sourceline


def test_status_links_reach_their_sections(site_html):
    page = soup(site_html / "chapters" / "status.html")
    links = [a["href"] for a in page.select("tr.claim-row a[href]")]
    assert len(links) >= len([s for s in status.SHORT.values() if s[2]])
    for href in links:
        target, _, anchor = href.partition("#")
        path = site_html / "chapters" / target
        assert path.exists(), f"status links to a missing page {href}"
        if anchor:
            assert soup(path).find(id=anchor) is not None, f"status links to a missing section {href}"


MATH = {"math", "MathJax", "mjx-container"}


def visible_text(path: Path) -> str:
    """A page's text outside math, code, scripts and outputs shown as code."""
    page = soup(path)
    for tag in page(["script", "style", "pre", "code", "mjx-container", "math", "textarea"]):
        tag.decompose()
    for tag in page.select(".math, .highlight, .mathjax_ignore, .tex2jax_ignore"):
        tag.decompose()
    main = page.select_one("main") or page
    return main.get_text(" ")


def test_no_raw_tex_outside_math(site_html):
    """A '$' or '\\(' left in a page's text is math that MyST did not parse (e.g. a source line
    starting with '- ' inside a $…$ span, issue 19)."""
    for path in pages(site_html):
        text = visible_text(path)
        for raw in ("$", "\\(", "\\["):
            i = text.find(raw)
            assert i < 0, f"{path.name}: raw {raw!r} outside math: …{text[max(0, i - 80):i + 80]}…"


def test_mathjax_is_served_from_the_site(site_html):
    """MathJax is vendored (sphinx-mathjax-offline): every page loads it from _static, not a CDN."""
    assert (site_html / "_static" / "mathjax" / "tex-chtml.js").exists()
    with_math = 0
    for path in pages(site_html):
        page = soup(path)
        srcs = [s.get("src", "") for s in page("script")]
        mathjax = [s for s in srcs if "mathjax" in s.lower() or "tex-chtml" in s]
        assert all("_static/mathjax/" in s and "://" not in s for s in mathjax), f"{path.name}: {mathjax}"
        if page.select(".math"):  # Sphinx loads MathJax only on pages with math
            with_math += 1
            assert mathjax, f"{path.name} has math but loads no MathJax"
    assert with_math >= 3


def test_raw_tex_check_sees_a_split_math_span(tmp_path):
    """The check above catches the defect it is for: a '$…$' span split by a bullet."""
    page = tmp_path / "p.html"
    page.write_text('<main><p>gives $\\mathbb{E}(F-y)^2</p><ul><li>2q$ never</li></ul>'
                    '<span class="math">\\(x\\)</span><pre>$ ls</pre></main>')
    text = visible_text(page)
    assert "$" in text and "\\(" not in text and "ls" not in text


def test_intro_opens_with_the_results(site_html):
    """The intro shows the tally, the headline claims with verdict badges, the headline figure and
    the lists of what did not (fully) reproduce — before the how-to sections."""
    page = soup(site_html / "chapters" / "intro.html")
    from symlib import paper
    rows = page.select("tr.claim-row")
    assert [r["data-claim"] for r in rows] == [c for c in status.CLAIMS if c in paper.HEADLINE_CLAIMS]
    assert all(r.select_one(".verdict-badge").get_text(strip=True) in status.VERDICTS for r in rows)
    assert page.select_one(".verdict-tally") is not None
    heading = page.find(id="the-headline-figure")
    assert heading is not None and heading.find("img") is not None, "no headline figure"
    assert len(page.select("ul.verdict-list li.claim-item")) == sum(
        1 for v in status.table()["verdict"] if v != "reproduced")
    how_to = page.find(id="how-to-re-run-it")
    assert how_to is not None and rows[0].sourceline < how_to.sourceline


# ----------------------------------------------------------------------------- a real browser


def chromium():
    import shutil
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def rendered(path: Path) -> BeautifulSoup:
    """The page's DOM after a headless Chromium loaded it from disk and ran its scripts (MathJax)."""
    import subprocess
    out = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                          "--virtual-time-budget=15000", "--dump-dom", path.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "<html" in out.stdout, out.stderr[-2000:]
    return BeautifulSoup(out.stdout, "html.parser")


@pytest.mark.skipif(chromium() is None, reason="no chromium on this machine (Debian: apt-get install chromium; "
                                               ".ci/run installs it where it can)")
def test_a_browser_shows_the_verdicts_the_headline_and_the_math(site_html):
    intro = rendered(site_html / "chapters" / "intro.html")
    badges = [b.get_text(strip=True) for b in intro.select("tr.claim-row .verdict-badge")]
    assert badges and set(badges) <= set(status.VERDICTS)
    img = intro.find(id="the-headline-figure").find("img")
    assert (site_html / "chapters" / img["src"]).exists(), f"headline figure {img['src']} missing"
    assert intro.find("mjx-container") is not None, "MathJax did not render the intro's math (offline)"
    page = rendered(site_html / "chapters" / "status.html")
    rows = page.select("tr.claim-row")
    assert len(rows) == len(status.CLAIMS)
    assert all(r.find_all("td", recursive=False)[1].get_text(strip=True) in status.VERDICTS for r in rows)
    for dom in (intro, page, rendered(site_html / "chapters" / "mlp_failure.html")):
        text = dom.get_text(" ")
        for bad in ("Traceback", "Math input error", "Misplaced", "Undefined control sequence"):
            assert bad not in text, bad
        assert not dom.select("mjx-merror"), "a formula failed to render"
