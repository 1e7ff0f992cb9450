"""The book (symlib.book, _toc.yml, chapters/): bad input, clean committed notebooks, a failing
chapter, every chapter executed in the smoke profile, and the built site.  Generic over the
notebooks of _toc.yml, so a new chapter is covered by adding it there."""

import json
import re
from pathlib import Path

import nbformat
import pytest

from symlib import book
from symlib.cli import main

CHAPTERS = book.chapters()
NOISE = {  # what must never appear in a stored output
    "a memory address": re.compile(r"\b0x[0-9a-fA-F]{6,}\b"),
    "a progress bar": re.compile(r"\d+it/s|s/it\]|\d+%\|"),
    "a Lightning banner": re.compile(r"GPU available|TPU available|LOCAL_RANK|Trainer\.fit|Seed set to"),
    "a timing": re.compile(r"Wall time:|CPU times:|\d+(\.\d+)? ?(ms|µs) per loop"),
    "a traceback": re.compile(r"Traceback \(most recent call last\)"),
}


def output_text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        parts.append(o.get("text", ""))
        parts += [v for k, v in o.get("data", {}).items() if k.startswith("text/") and isinstance(v, str)]
    return "\n".join(parts)


def figure_cells(nb) -> int:
    """Code cells shown on the site with an image output."""
    hidden = {"remove-cell", "remove-output"}
    return sum(1 for c in nb.cells if c.cell_type == "code" and not hidden & set(c.metadata.get("tags", []))
               and any(k.startswith("image/") for o in c.get("outputs", []) for k in o.get("data", {})))


def check_site(html: Path, source: Path) -> None:
    """Every chapter of _toc.yml is a page with an <img> for each figure cell and no error text."""
    for name, notebook in book.chapters(source / "_toc.yml").items():
        page = html / notebook.relative_to(source).with_suffix(".html")
        assert page.exists(), f"{name}: no page {page}"
        text = page.read_text(encoding="utf-8")
        images = re.findall(r'<img[^>]+src="[^"]*_images/', text)
        assert len(images) >= figure_cells(nbformat.read(notebook, as_version=4)), f"{name}: a figure is missing"
        for marker in ("Traceback (most recent call last)", 'class="output traceback"', "output stderr"):
            assert marker not in text, f"{name}: {marker!r} in {page}"


# ----------------------------------------------------------------------------- the chapters


def test_toc_pages_exist():
    assert list(CHAPTERS)[0] == "intro" and list(CHAPTERS)[-1] == "status"
    for name, path in CHAPTERS.items():
        assert path.exists(), f"_toc.yml lists {path}, which does not exist"


@pytest.mark.parametrize("name", CHAPTERS)
def test_committed_chapter_is_executed_and_clean(name):
    path = CHAPTERS[name]
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    assert "papermill" not in nb.metadata, "papermill metadata: re-run `python -m symlib book`"
    params = book.parameters(path)
    assert params["profile"] == "paper"
    code = [c for c in nb.cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in code]
    first = next(i for i, t in enumerate(tags) if "parameters" in t)
    rest = [c for c, t in zip(code[first + 1:], tags[first + 1:]) if "injected-parameters" not in t]
    assert "check_profile(profile)" in rest[0].source, "the cell after the parameters checks the profile"
    injected = [c for c, t in zip(code, tags) if "injected-parameters" in t]
    assert len(injected) <= 1 and all("remove-cell" in c.metadata["tags"] for c in injected)
    assert all('profile = "paper"' in c.source for c in injected), "the committed outputs are the paper profile's"
    for cell in code:
        assert not {"papermill", "execution"} & set(cell.metadata), f"metadata noise in cell {cell.id}"
        assert cell.execution_count is not None, f"cell {cell.id} was not executed"
        for o in cell.outputs:
            assert o.output_type != "error", f"cell {cell.id} failed: {o.get('ename')}"
            assert not (o.output_type == "stream" and o.name == "stderr"), f"stderr in cell {cell.id}: {o.text[:200]}"
        text = output_text(cell)
        for what, pattern in NOISE.items():
            assert not pattern.search(text), f"{what} in the output of cell {cell.id}"
        if cell.source.startswith("# NBVAL_CHECK_OUTPUT") or "nbval-check-output" in cell.metadata.get("tags", []):
            assert cell.outputs, f"claim cell {cell.id} has no output"


def test_committed_chapters_open_on_colab_from_the_configured_repository():
    url = book.repository_url(book.REPO)
    assert url and url.startswith("https://")
    for name, path in CHAPTERS.items():
        nb = nbformat.read(path, as_version=4)
        launch = [i for i, c in enumerate(nb.cells) if book.LAUNCH_TAG in c.metadata.get("tags", [])]
        assert len(launch) == 1, f"{name}: one Colab cell expected (re-run `python -m symlib book {name}`)"
        cell = nb.cells[launch[0]]
        assert cell.source == book.launch_cell_source(url), f"{name}: Colab cell is stale for {url}"
        assert "remove-cell" in cell.metadata.tags and not cell.outputs
        assert "parameters" in nb.cells[launch[0] + 1].metadata.get("tags", [])


def test_launch_cell_is_inserted_before_the_parameters_once_and_follows_the_url():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# title"),
                                         nbformat.v4.new_code_cell("profile = 'paper'", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("check_profile(profile)")])
    once = book.with_launch_cell(nb, "https://example.org/a")
    twice = book.with_launch_cell(once, "https://example.org/b")
    assert [c.cell_type for c in twice.cells] == ["markdown", "code", "code", "code"]
    assert "https://example.org/b" in twice.cells[1].source and "example.org/a" not in twice.cells[1].source
    assert "google.colab" in twice.cells[1].source and twice.cells[2].metadata.tags == ["parameters"]
    compile(twice.cells[1].source, "launch", "exec")  # valid Python
    assert len(book.with_launch_cell(twice, None).cells) == 3


def test_repository_url_reads_the_config(tmp_path):
    assert book.repository_url(tmp_path) is None
    (tmp_path / "_config.yml").write_text("title: t\n")
    assert book.repository_url(tmp_path) is None
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://x.org/r\n")
    assert book.repository_url(tmp_path) == "https://x.org/r"


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, message", [
    (["--profile", "fast"], "unknown profile 'fast'; allowed: paper, smoke"),
    (["nope"], "unknown chapter(s) 'nope'; allowed: intro, "),
    (["template_tasks", "-p", "n", "many"], "parameter n of chapter 'template_tasks' must be int like its default 64; got 'many' (str)"),
    (["template_tasks", "-p", "n", "1.5"], "parameter n of chapter 'template_tasks' must be int"),
    (["template_tasks", "-p", "seeds", "[0, 'a']"], "parameter seeds of chapter 'template_tasks' must be a list of distinct integers >= 0"),
    (["template_tasks", "-p", "n_diversity", "[16, 'a']"], "parameter n_diversity of chapter 'template_tasks' must be list of int"),
    (["template_tasks", "-p", "width", "3"], "chapter 'template_tasks' has no parameter 'width'; its parameters: seeds, n,"),
    (["-p", "profile", "smoke"], "set the profile with --profile"),
])
def test_bad_input_exits_2_and_touches_nothing(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path))
    before = {p: p.read_bytes() for p in CHAPTERS.values()}
    assert main(["book", "--no-build", *args]) == 2
    assert message in capsys.readouterr().err
    assert {p: p.read_bytes() for p in CHAPTERS.values()} == before and not list(tmp_path.iterdir())


def test_corrupt_run_record_stops_the_book_before_it_runs(capsys, tmp_path, monkeypatch):
    # a book of one chapter in tmp_path, whose paper store is tmp_path/data (as data/ is the repository's)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    write_notebook(tmp_path / "intro.ipynb", 'profile = "paper"', 'print("ran")')
    monkeypatch.setattr(book, "TOC", tmp_path / "_toc.yml")
    monkeypatch.delenv("SYMLIB_DATA", raising=False)
    bad = tmp_path / "data" / "runs" / "0123456789abcdef.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"key": "0123456789abcdef", "config": {"ta')  # a truncated record
    before = (tmp_path / "intro.ipynb").read_bytes()
    assert main(["book", "--no-build", "intro"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not valid JSON" in err and "delete it and re-run" in err
    assert (tmp_path / "intro.ipynb").read_bytes() == before and not (tmp_path / "_build").exists()


def test_corrupt_timings_file_is_named(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path))
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "timings.json").write_text("{")
    with pytest.raises(ValueError, match=r"corrupt file .*timings.json .*re-run `python -m symlib book`"):
        book.timings_table()


def test_parameters_and_values():
    assert book.parse_value("[0, 1]") == [0, 1] and book.parse_value("smoke") == "smoke"
    assert book.check_parameter("x", "lr", 1, 0.5) == 1.0 and isinstance(book.check_parameter("x", "lr", 1, 0.5), float)
    with pytest.raises(ValueError, match="must be bool"):
        book.check_parameter("x", "flag", 1, True)


# ----------------------------------------------------------------------------- a failing chapter


def write_notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)


def test_a_failing_chapter_stops_the_book_and_leaves_its_notebook_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path / "data"))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: bad\nchapters:\n- file: good\n")
    write_notebook(tmp_path / "bad.ipynb", 'profile = "paper"', 'print("half")', 'raise RuntimeError("boom")')
    write_notebook(tmp_path / "good.ipynb", 'profile = "paper"', 'print("fine")')
    before = {p: p.read_bytes() for p in tmp_path.glob("*.ipynb")}
    with pytest.raises(SystemExit, match="chapter 'bad' failed \\(RuntimeError: boom\\)") as e:
        book.run(None, "paper", toc=tmp_path / "_toc.yml", build=False, scratch=tmp_path / "scratch")
    assert {p: p.read_bytes() for p in tmp_path.glob("*.ipynb")} == before      # nothing half-written
    failed = tmp_path / "scratch" / "bad.failed.ipynb"
    assert str(failed) in str(e.value) and "boom" in json.dumps(nbformat.read(failed, as_version=4))
    assert [p.name for p in (tmp_path / "scratch").iterdir()] == ["bad.failed.ipynb"]
    assert not (tmp_path / "data" / "book" / "timings.json").exists()          # good never ran


# ----------------------------------------------------------------------------- smoke and the site


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Every chapter of _toc.yml executed in the smoke profile, and the smoke site built."""
    tmp = tmp_path_factory.mktemp("book")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYMLIB_DATA", str(tmp / "data"))
        walls = book.run(None, "smoke", scratch=tmp / "smoke", build=True)
    return tmp, walls


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_runs_in_the_smoke_profile(smoke, name):
    tmp, walls = smoke
    assert name in walls
    nb = nbformat.read(tmp / "smoke" / "site" / CHAPTERS[name].relative_to(book.REPO), as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'profile = "smoke"' in injected[0].source
    assert "remove-cell" in injected[0].metadata["tags"] and "papermill" not in nb.metadata
    assert all(o.output_type != "error" for c in nb.cells for o in c.get("outputs", []))
    timings = json.loads((tmp / "smoke" / "data" / "book" / "timings.json").read_text())  # the smoke store's
    assert timings["smoke"][name]["wall_s"] >= 0 and "paper" not in timings
    assert not (tmp / "data").exists()                                      # SYMLIB_DATA untouched


def test_smoke_site_has_every_page(smoke):
    tmp, _ = smoke
    site = tmp / "smoke" / "site"
    check_site(site / "_build" / "html", site)


def test_book_builds_with_every_page_and_figure(site_html):
    """The committed book, built once per session (conftest.py's ``site_html``, also read by
    test_site.py)."""
    assert site_html.name == "html" and (site_html / "index.html").exists()
    check_site(site_html, book.REPO)


# ----------------------------------------------------------------------------- README compute table


def test_readme_compute_table_matches_the_store():
    assert book.readme_table(), "README.md's compute table is stale: run `python -m symlib book --readme-table`"


def test_readme_table_is_rewritten_from_the_store(tmp_path):
    from symlib.experiments import experiment
    from symlib.store import RunStore
    from symlib.training import fit
    store = RunStore(tmp_path / "data")
    config = experiment("fig6", "smoke")[0]
    store.put(fit(config))
    start, end = book.README_MARKERS
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{start}\nold\n{end}\n\nafter\n")
    assert not book.readme_table(readme, tmp_path / "data")            # stale: report, don't touch
    assert "old" in readme.read_text()
    assert not book.readme_table(readme, tmp_path / "data", write=True)
    text = readme.read_text()
    assert text.startswith("# title\n\n") and text.endswith(f"{end}\n\nafter\n") and "old" not in text
    assert re.search(r"\| \*\*distinct runs\*\* +\|", text)
    assert book.readme_table(readme, tmp_path / "data")                  # now up to date
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="must hold the markers"):
        book.readme_table(readme, tmp_path / "data")


def test_status_and_intro_run_after_the_chapters_whose_verdicts_they_show():
    order = list(book.plan(None, "paper"))
    assert order[-2:] == ["status", "intro"]
    assert [n for n in order if n not in ("status", "intro")] == [n for n in book.chapters() if n not in ("status", "intro")]
    assert list(book.plan(["intro", "next_token", "status"], "paper")) == ["next_token", "status", "intro"]
