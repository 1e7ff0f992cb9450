"""Publishing (issue 24): the GitHub workflows, `make publish`, the README's "Publishing" section,
and re-executing a chapter leaving its notebook byte for byte the same (streams merged)."""

import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml

from symlib import book

REPO = book.REPO
WORKFLOWS = REPO / ".github" / "workflows"


def workflow(name: str) -> dict:
    wf = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as True
    return wf


def steps(job: dict) -> list[dict]:
    return job["steps"]


def uses(job: dict) -> list[str]:
    return [s["uses"].split("@")[0] for s in steps(job) if "uses" in s]


def runs(job: dict) -> str:
    return "\n".join(s.get("run", "") for s in steps(job))


# ----------------------------------------------------------------------------- the workflows


def test_workflow_files_are_valid_yaml_with_pinned_official_actions():
    files = sorted(p.name for p in WORKFLOWS.glob("*.yml"))
    assert files == ["book.yml", "linkcheck.yml"]
    for name in files:
        wf = workflow(name)
        assert wf["name"] and wf["on"] and wf["jobs"], name
        for job_name, job in wf["jobs"].items():
            assert job["runs-on"] == "ubuntu-latest", (name, job_name)
            for step in steps(job):
                assert ("uses" in step) != ("run" in step), (name, job_name, step)
                if "uses" in step:
                    action, _, version = step["uses"].partition("@")
                    assert action.startswith("actions/") and re.fullmatch(r"v\d+", version), step["uses"]


def test_book_workflow_builds_checks_and_deploys_from_main():
    wf = workflow("book.yml")
    assert wf["on"]["push"]["branches"] == ["main"] and "pull_request" in wf["on"]
    assert wf["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    assert uses(build) == ["actions/checkout", "actions/setup-python", "actions/upload-pages-artifact"]
    python = next(s for s in steps(build) if s.get("uses", "").startswith("actions/setup-python"))
    assert str(python["with"]["python-version"]) == "3.11"
    commands = runs(build)
    assert "pip install -r requirements.txt" in commands                      # the pinned requirements
    assert "jupyter-book build . --all -W --keep-going" in commands            # the site, as `make book` builds it
    assert "symlib book" not in commands and "papermill" not in commands       # nothing is executed
    check = next(s for s in steps(build) if "pytest" in s.get("run", ""))
    assert check["env"]["SYMLIB_TEST_SITE"] == "_build/html"                   # the HTML checks on this build
    for target in check["run"].split()[3:]:
        path, _, test = target.partition("::")
        assert (REPO / path).exists() and (not test or f"def {test}(" in (REPO / path).read_text()), target
    assert "tests/test_site.py" in check["run"]
    upload = steps(build)[-1]
    assert upload["uses"].startswith("actions/upload-pages-artifact") and upload["with"]["path"] == "_build/html"
    assert uses(deploy) == ["actions/deploy-pages"] and deploy["needs"] == "build"
    assert "refs/heads/main" in deploy["if"] and "pull_request" in deploy["if"]
    assert deploy["environment"]["name"] == "github-pages"


def test_linkcheck_workflow_is_scheduled():
    wf = workflow("linkcheck.yml")
    assert wf["on"]["schedule"][0]["cron"] and "workflow_dispatch" in wf["on"]
    assert wf["permissions"] == {"contents": "read"}
    (job,) = wf["jobs"].values()
    assert uses(job) == ["actions/checkout", "actions/setup-python"]
    assert "pip install -r requirements.txt" in runs(job)
    assert "jupyter-book build . --builder linkcheck" in runs(job)


# ----------------------------------------------------------------------------- make publish, README


def test_make_publish_pushes_the_built_site_with_ghp_import():
    assert re.search(r"^ghp-import==[\d.]+$", (REPO / "requirements.txt").read_text(), re.M)
    assert re.search(r"^PyYAML==[\d.]+$", (REPO / "requirements.txt").read_text(), re.M)
    plan = subprocess.run(["make", "-n", "publish"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "jupyter-book build . --all -W --keep-going" in plan and "symlib book" not in plan
    assert re.search(r"ghp-import --no-jekyll --push .* _build/html$", plan, re.M)


def test_ghp_import_writes_the_site_to_gh_pages(tmp_path):
    """What `make publish` runs, without --push: the site and .nojekyll on the gh-pages branch."""
    exe = Path(book.sys.executable).with_name("ghp-import")
    if not exe.exists():
        pytest.skip("ghp-import is not installed: pip install -r requirements.txt")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(git + ["init", "-q"], check=True)
    site = tmp_path / "_build" / "html"
    (site / "_static").mkdir(parents=True)
    (site / "index.html").write_text("<p>book</p>")
    (site / "_static" / "a.css").write_text("p{}")
    env = {**book.os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run([str(exe), "--no-jekyll", "-m", "site", "_build/html"], cwd=tmp_path, check=True, env=env)
    files = subprocess.run(git + ["ls-tree", "-r", "--name-only", "gh-pages"], capture_output=True, text=True,
                           check=True).stdout.split()
    assert sorted(files) == [".nojekyll", "_static/a.css", "index.html"]


def test_readme_publishing_section():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Publishing\n", 1)[1].split("\n## ", 1)[0]
    url = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]["url"]
    assert "`repository.url`" in section and "_config.yml" in section
    for promised in ("book.yml", "linkcheck.yml", "make publish", "ghp-import", "--builder linkcheck",
                     "GitHub Pages", "SYMLIB_TEST_SITE=_build/html"):
        assert promised in section, promised
    assert url.startswith("https://")


# ----------------------------------------------------------------------------- a clean diff on re-running


def test_consecutive_streams_are_merged():
    out = nbformat.v4.new_output
    outputs = [out("stream", name="stdout", text="a\n"), out("stream", name="stdout", text="b\n"),
               out("stream", name="stderr", text="w\n"), out("stream", name="stdout", text="c"),
               out("display_data", data={"text/plain": "x"}), out("stream", name="stdout", text=["d", "e\n"]),
               out("stream", name="stdout", text="f\n")]
    merged = book.merge_streams(outputs)
    assert [(o.output_type, o.get("name"), o.get("text")) for o in merged] == [
        ("stream", "stdout", "a\nb\n"), ("stream", "stderr", "w\n"), ("stream", "stdout", "c"),
        ("display_data", None, None), ("stream", "stdout", "de\nf\n")]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)", outputs=outputs[:2]),
                                         nbformat.v4.new_markdown_cell("text")])
    assert book.clean(nb).cells[0].outputs == [out("stream", name="stdout", text="a\nb\n")]


def test_a_chapter_printing_in_chunks_is_written_with_one_stream(tmp_path, monkeypatch):
    """Printing flushed at intervals reaches the notebook as one stdout output, the same every run."""
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path / "data"))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: chunks\n")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell('profile = "paper"', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import sys, time\nfor i in range(3):\n"
                                          "    print(i, flush=True); print('w', file=sys.stderr, flush=True)\n"
                                          "    print(i, flush=True); time.sleep(0.2)")]
    nbformat.write(nb, tmp_path / "chunks.ipynb")
    written = []
    for _ in range(2):
        book.run(None, "paper", toc=tmp_path / "_toc.yml", build=False, scratch=tmp_path / "scratch")
        written.append((tmp_path / "chunks.ipynb").read_bytes())
    assert written[0] == written[1]
    outputs = nbformat.reads(written[0].decode(), as_version=4).cells[-1].outputs
    assert [(o.name, o.text) for o in outputs] == [("stdout", "0\n"), ("stderr", "w\n"), ("stdout", "0\n1\n"),
                                                   ("stderr", "w\n"), ("stdout", "1\n2\n"), ("stderr", "w\n"),
                                                   ("stdout", "2\n")]


def test_reexecuting_a_chapter_gives_the_same_notebook(tmp_path, monkeypatch):
    """The kernel chapter (small: ~10 s in the smoke profile) executed twice, each time on a fresh
    smoke store: the two notebooks are the same byte for byte (they hold no timings)."""
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path / "unused"))
    written = []
    for i in range(2):
        book.run(["kernel"], "smoke", scratch=tmp_path / "smoke", build=False)
        copy = tmp_path / f"kernel.{i}.ipynb"
        shutil.copyfile(tmp_path / "smoke" / "site" / "chapters" / "kernel.ipynb", copy)
        written.append(copy.read_bytes())
    assert written[0] == written[1]
    nb = nbformat.reads(written[0].decode(), as_version=4)
    assert nb.cells and all(
        not (a.output_type == b.output_type == "stream" and a.name == b.name)
        for c in nb.cells for a, b in zip(c.get("outputs", []), c.get("outputs", [])[1:]))
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize("name", book.chapters())
def test_committed_chapter_is_written_as_clean_writes_it(name):
    """A committed chapter is a fixed point of clean(): no split streams, nothing a re-run would
    change but what it measures."""
    path = book.chapters()[name]
    text = path.read_text(encoding="utf-8")
    assert nbformat.writes(book.clean(nbformat.reads(text, as_version=4))) == text, \
        f"{name}: re-execute it with `python -m symlib book {name}`"
