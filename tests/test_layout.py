"""The house's plan: the README's module tables match the tree, and chapter modules their chapters."""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def committed_modules() -> set[str]:
    """``symlib.<name>`` of every tracked module (work in progress, not yet added, is not in the plan)."""
    try:
        out = subprocess.run(["git", "ls-files", "symlib/*.py"], cwd=REPO, capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        out = [str(p.relative_to(REPO)) for p in (REPO / "symlib").glob("*.py")]
    names = {Path(p).stem for p in out if (REPO / p).exists()}
    return {f"symlib.{n}" for n in names - {"__init__", "__main__"}}


def table_rows() -> dict[str, list[str]]:
    """``{module: [the other cells]}`` of the README's module tables."""
    rows = {}
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| `(symlib\.\w+)` \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", m.group(2))]
    return rows


def test_readme_module_tables_match_the_tree():
    rows = table_rows()
    assert set(rows) == committed_modules()


def test_chapter_modules_name_existing_chapters():
    chapters = {p.stem for p in (REPO / "chapters").glob("*.ipynb")}
    for module, cells in table_rows().items():
        if len(cells) == 2:  # a chapter module: | module | chapter | what |
            chapter = cells[0].strip("`")
            # the chapter exists, or is being written and its module already bears its name
            assert chapter in chapters or module == f"symlib.{chapter}", (module, chapter)


def test_every_reference_is_cited():
    """references.bib holds only what a chapter cites: an uncited entry is a reference the text
    names without {cite} (or one it no longer names)."""
    keys = set(re.findall(r"^@\w+\{([^,\s]+),", (REPO / "references.bib").read_text(encoding="utf-8"), re.M))
    cited = set()
    for nb in (REPO / "chapters").glob("*.ipynb"):
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", nb.read_text(encoding="utf-8")):
            cited |= {k.strip() for k in group.split(",")}
    assert keys, "references.bib has no entries"
    assert keys - cited == set(), f"never cited: {sorted(keys - cited)}"
    assert cited - keys == set(), f"cited but not in references.bib: {sorted(cited - keys)}"
