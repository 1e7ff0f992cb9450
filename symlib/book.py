"""The book: execute the chapters with papermill, then build the static site with Jupyter Book.

    python -m symlib book                              # paper profile, every chapter of _toc.yml
    python -m symlib book --profile smoke              # tiny sizes, every code path, in seconds
    python -m symlib book template_tasks -p seeds "[0, 1]"

Chapters are the notebooks of ``_toc.yml``, executed in its order, the status page and the intro
last (they summarise the others' verdicts and timings); a chapter's name is its file
name (``chapters/template_tasks.ipynb`` -> ``template_tasks``).  Every chapter has one cell
tagged ``parameters``; ``--profile`` sets its ``profile`` and ``-p NAME VALUE`` any other of its
parameters (the value is a Python literal; its type must match the default's).

Profiles (:data:`symlib.experiments.PROFILES`):

* ``paper``  executes the notebooks **in place** (these outputs are what the site shows), reading
             results from the run store ``data/`` and computing only what it lacks.  It reads only
             the repository's ``data/``: a ``SYMLIB_DATA`` naming another folder is refused.
             With ``-p`` it is no longer the paper's protocol, so it executes into
             ``_build/custom/site/chapters/`` on a copy of ``data/`` that shares only ``runs/``
             (see :func:`run`): the committed notebooks, timings and verdicts stay as they are.
* ``smoke``  executes into ``_build/smoke/site/chapters/`` with a fresh, empty run store
             (``_build/smoke/data``, its timings included), so the committed notebooks keep their
             paper outputs and ``data/`` is never touched; the smoke site is built from that copy
             into ``_build/smoke/site/_build/html``.

A chapter is executed into a scratch file and only renamed over its destination once it ran to
the end, cleaned of papermill's metadata noise, with the injected-parameters cell tagged
``remove-cell`` (hidden on the site).  The first failing chapter stops the run; its executed copy
with the error is kept beside the scratch files; Ctrl-C leaves the chapter's notebook unchanged
too (exit code 130).  Each chapter's wall time is recorded in ``<store>/book/timings.json`` of the
run's own store (for the paper profile, ``data/``: the intro's timing table).  Then ``jupyter-book build --all -W
--keep-going`` with execution off (``_config.yml``): a warning or a broken page fails the build.
Bad input (profile, chapter name, parameter name or type, a corrupt record) exits with code 2.
"""

from __future__ import annotations

import ast
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import yaml

from .runs import VERSION, trained_on
from .experiments import PROFILES, check_profile
from .store import RunStore, atomic_write_text, default_root

REPO = Path(__file__).resolve().parent.parent
TOC = REPO / "_toc.yml"
SITE_FILES = ("_config.yml", "_toc.yml", "references.bib", "chapters")  # what the site is built from


# ----------------------------------------------------------------------------- chapters


def chapters(toc: Path = TOC) -> dict[str, Path]:
    """Name -> notebook path of every ``.ipynb`` page of ``_toc.yml``, in order."""
    toc = Path(toc)
    files: list[str] = []

    def walk(entry):
        if isinstance(entry, dict):
            for k, v in entry.items():
                if k in ("root", "file"):
                    files.append(v)
                else:
                    walk(v)
        elif isinstance(entry, list):
            for e in entry:
                walk(e)

    walk(yaml.safe_load(toc.read_text(encoding="utf-8")))
    out = {}
    for f in files:
        path = toc.parent / f
        path = path if path.suffix else path.with_suffix(".ipynb")
        if path.suffix == ".ipynb":
            out[path.stem] = path
    return out


SAFE_BUILTINS = {f.__name__: f for f in (range, list, tuple, dict, len, int, float, min, max, sum)}


def parameters(path: Path) -> dict:
    """Defaults of a notebook's one ``parameters`` cell: plain assignments whose values are
    literals or simple expressions (``list(range(100))``, ``[2 ** i for i in range(2, 13)]``),
    evaluated with no imports and a handful of builtins."""
    import nbformat  # here, not at the top: `python -m symlib sweep` must run without the notebook stack
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path} must have exactly one cell tagged 'parameters'; found {len(cells)}")
    tree = ast.parse(cells[0].source)
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            raise ValueError(f"the parameters cell of {path} may only hold assignments; "
                             f"line {node.lineno} is not one")
    out: dict = {}
    try:
        exec(compile(tree, str(path), "exec"), {"__builtins__": SAFE_BUILTINS}, out)
    except Exception as e:  # noqa: BLE001 - reported with the notebook's name
        raise ValueError(f"the parameters cell of {path} could not be evaluated: {e}") from None
    if "profile" not in out:
        raise ValueError(f"the parameters cell of {path} must define profile (one of {', '.join(PROFILES)})")
    return out


def parse_value(raw: str):
    """``-p`` values are Python literals (``3``, ``0.5``, ``[0, 1]``, ``True``); anything else is a string."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def check_parameter(chapter: str, name: str, value, default):
    """``value`` checked against the parameter's default and converted to its type (int -> float
    only), or a ValueError saying what is allowed.  Values are checked, not only types, because a
    value the chapter cannot use would fail minutes into its execution:

    * the type of the default (for a list, of its first element);
    * numbers are finite; one whose default is positive must be positive, non-negative stays
      non-negative (sizes, counts, rates, scales); for a list, against its smallest default;
    * a list whose default is not empty must not be empty;
    * ``seeds``, ``*_seeds``, ``seeds_*``: a non-empty list of distinct integers >= 0 (or None where
      the default is None: "every stored seed");
    * ``figures``: names of experiments of :mod:`symlib.experiments`.
    """
    where = f"parameter {name} of chapter {chapter!r}"
    if "seeds" in name.split("_"):
        return _check_seeds(where, value, default)
    if default is None:
        raise ValueError(f"{where} has no default to check a value against; set it in the notebook")

    def same(v, d):
        return type(v) is type(d) or (type(d) is float and type(v) is int)

    ok = same(value, default)
    if ok and isinstance(default, list) and default and value:
        ok = all(same(v, default[0]) for v in value)
    if not ok:
        want = type(default).__name__ + (f" of {type(default[0]).__name__}" if isinstance(default, list) and default else "")
        raise ValueError(f"{where} must be {want} like its default {default!r}; got {value!r} ({type(value).__name__})")
    if isinstance(default, list):
        if default and not value:
            raise ValueError(f"{where} must not be empty (its default is {default!r})")
        if default and all(_is_number(d) for d in default):
            for v in value:
                _check_number(where + " (each)", v, min(default))
        if name == "figures":
            from .experiments import EXPERIMENTS
            for v in value:
                if v not in EXPERIMENTS:
                    raise ValueError(f"{where}: unknown figure {v!r}; allowed: {', '.join(EXPERIMENTS)}")
        return [float(v) for v in value] if default and type(default[0]) is float else value
    if _is_number(default):
        _check_number(where, value, default)
    return float(value) if type(default) is float else value


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_number(where: str, value, default) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number; got {value!r}")
    if default > 0 and not value > 0:
        raise ValueError(f"{where} must be > 0 (its default is {default!r}); got {value!r}")
    if default >= 0 and value < 0:
        raise ValueError(f"{where} must be >= 0 (its default is {default!r}); got {value!r}")


def _check_seeds(where: str, value, default):
    if value is None and default is None:
        return None
    if isinstance(value, list) and not value:
        raise ValueError(f"{where} must not be empty; give at least one seed, e.g. [0]")
    if not (isinstance(value, list) and all(type(v) is int and v >= 0 for v in value) and len(set(value)) == len(value)):
        raise ValueError(f"{where} must be a list of distinct integers >= 0, e.g. [0, 1]"
                         f"{' (or None)' if default is None else ''}; got {value!r}")
    return value


# Pages that summarise the others: they read the status records and timings the chapters write.
SUMMARIES = ("status", "intro")


def execution_order(names) -> list[str]:
    """``_toc.yml`` order, except that the summary pages (:data:`SUMMARIES`) come last, so one
    ``book`` run never shows the verdicts of the run before it."""
    names = list(names)
    return [n for n in names if n not in SUMMARIES] + [n for n in SUMMARIES if n in names]


def plan(names: list[str] | None, profile: str, overrides: list[tuple[str, str]] = (),
         toc: Path = TOC) -> dict[str, tuple[Path, dict]]:
    """Validate the request before anything runs: chapter -> (notebook, papermill parameters)."""
    check_profile(profile)
    known = chapters(toc)
    names = list(known) if not names else names
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown chapter(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(known)}")
    todo = {}
    for name in execution_order(known):  # whatever the order asked
        if name not in names:
            continue
        defaults = parameters(known[name])
        params = {"profile": profile}
        for key, raw in overrides:
            if key == "profile":
                raise ValueError("set the profile with --profile, not -p profile")
            if key not in defaults:
                raise ValueError(f"chapter {name!r} has no parameter {key!r}; its parameters: "
                                 f"{', '.join(k for k in defaults if k != 'profile')}")
            params[key] = check_parameter(name, key, parse_value(raw), defaults[key])
        todo[name] = (known[name], params)
    return todo


# ----------------------------------------------------------------------------- execution


def merge_streams(outputs: list) -> list:
    """Consecutive stream outputs of the same stream (stdout, stderr) as one: how a cell's printing
    is split into chunks depends on timing, so unmerged re-runs differ with no change in content.
    Returns a new list; ``outputs`` is left as it is."""
    import nbformat

    def text(o):
        return "".join(o.get("text", "")) if isinstance(o.get("text"), list) else o.get("text", "")

    merged: list = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (out.get("output_type") == "stream" and prev is not None and prev.get("output_type") == "stream"
                and prev.get("name") == out.get("name")):
            merged[-1] = nbformat.NotebookNode({**prev, "text": text(prev) + text(out)})
        else:
            merged.append(out)
    return merged


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop papermill/nbclient metadata (timestamps, durations, paths), merge consecutive stream
    outputs (:func:`merge_streams`) and hide the injected parameters: tag ``remove-cell`` and a
    fixed cell id, so re-running an unchanged chapter changes nothing but what it measures."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if "outputs" in cell:
            cell["outputs"] = merge_streams(cell["outputs"])
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            cell.metadata["tags"] = tags + ["remove-cell"] * ("remove-cell" not in tags)
            cell["id"] = "injected-parameters"
    return nb


LAUNCH_TAG = "launch"  # the Colab set-up cell (hidden on the site, see :func:`with_launch_cell`)


def repository_url(book: Path) -> str | None:
    """``repository.url`` of the book's ``_config.yml`` (None if it names none)."""
    path = Path(book) / "_config.yml"
    config = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    url = ((config or {}).get("repository") or {}).get("url")
    return str(url) if url else None


def launch_cell_source(url: str) -> str:
    """The first code cell of every chapter: on Colab (a no-op anywhere else) it clones the book
    from ``url``, installs ``symlib`` with the pinned requirements, and moves to ``chapters/`` so
    the stored results are found — what the page's Colab button needs to run the chapter."""
    return f'''# Colab only (a no-op elsewhere): fetch the book, install symlib and its pinned requirements,
# and run from its chapters/ folder so the stored results in data/ are found.
import sys
if "google.colab" in sys.modules:
    import os, subprocess
    BOOK = "/content/book"
    if not os.path.isdir(BOOK):
        subprocess.run(["git", "clone", "--depth", "1", "{url}", BOOK], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", f"{{BOOK}}/requirements.txt",
                        "-e", BOOK], check=True)
    sys.path.insert(0, BOOK)
    os.chdir(f"{{BOOK}}/chapters")'''


def with_launch_cell(nb: nbformat.NotebookNode, url: str | None) -> nbformat.NotebookNode:
    """``nb`` with its Colab set-up cell (:func:`launch_cell_source`) fresh for ``url``, just before
    the ``parameters`` cell and tagged ``remove-cell`` (the site does not show it; Colab does).
    With no ``url`` the cell is removed.  The chapter's own cells are left as they are."""
    import nbformat
    nb.cells = [c for c in nb.cells if LAUNCH_TAG not in c.metadata.get("tags", [])]
    if url:
        at = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), 0)
        cell = nbformat.v4.new_code_cell(launch_cell_source(url), metadata={"tags": [LAUNCH_TAG, "remove-cell"]})
        cell["id"] = "colab-launch"
        nb.cells.insert(at, cell)
    return nb


def execute(name: str, notebook: Path, params: dict, dest: Path, scratch: Path, url: str | None = None) -> float:
    """Run one chapter with papermill into ``scratch`` and move it, cleaned, to ``dest``; its Colab
    cell is refreshed for the repository ``url`` first (:func:`with_launch_cell`).
    Returns the wall time in seconds; raises SystemExit naming the chapter if it fails."""
    import nbformat
    import papermill
    scratch.mkdir(parents=True, exist_ok=True)
    running = scratch / f"{name}.running.ipynb"
    source = scratch / f"{name}.input.ipynb"
    atomic_write_text(source, nbformat.writes(with_launch_cell(nbformat.read(notebook, as_version=4), url)))
    start = time.perf_counter()
    try:
        papermill.execute_notebook(source, running, parameters=params, kernel_name="python3",
                                   progress_bar=False, cwd=notebook.parent)
    except KeyboardInterrupt:
        running.unlink(missing_ok=True)
        source.unlink(missing_ok=True)
        raise KeyboardInterrupt(f"chapter {name!r} was not finished; {dest} is unchanged") from None
    except Exception as e:
        source.unlink(missing_ok=True)
        failed = scratch / f"{name}.failed.ipynb"
        if running.exists():
            os.replace(running, failed)
        what = f"{e.ename}: {e.evalue}" if hasattr(e, "ename") else f"{type(e).__name__}: {e}"
        raise SystemExit(f"python -m symlib book: chapter {name!r} failed ({what}).\n"
                         f"The executed notebook with the error is {failed}; {dest} is unchanged.") from None
    wall = time.perf_counter() - start
    nb = clean(nbformat.read(running, as_version=4))
    atomic_write_text(dest, nbformat.writes(nb))
    running.unlink()
    source.unlink()
    return wall


def record_timing(root: Path, profile: str, name: str, wall: float, new_runs: int) -> None:
    """Add one chapter's wall time to ``<root>/book/timings.json`` (atomically)."""
    path = Path(root) / "book" / "timings.json"
    data = read_json(path) if path.exists() else {}
    data.setdefault(profile, {})[name] = {
        "wall_s": round(wall, 1), "new_runs": new_runs, "date": date.today().isoformat(),
        "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "symlib": VERSION}
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt file {path} ({e}); delete it and re-run `python -m symlib book` "
                         "to rewrite it") from None


def check_data(root: Path) -> None:
    """Read every run and status record once, so a corrupt one stops the book before it starts."""
    from .status import table
    RunStore(root).load()
    table(root)


def paper_store(toc: Path = TOC) -> Path:
    """The store the paper profile reads: the book's own ``data/`` (the repository's, for the
    repository's ``_toc.yml``).  ``SYMLIB_DATA`` may only name that same folder: the committed
    notebooks must show what the committed store holds, never another store's results."""
    root = Path(toc).parent / "data"
    env = os.environ.get("SYMLIB_DATA")
    if env and Path(env).resolve() != root.resolve():
        raise ValueError(f"the paper profile reads only the book's store {root}, but SYMLIB_DATA is set to "
                         f"{env}: unset SYMLIB_DATA (or set it to {root}), or use --profile smoke, which "
                         "runs on a fresh store of its own")
    return root


def run(names: list[str] | None = None, profile: str = "paper", overrides: list[tuple[str, str]] = (),
        build: bool = True, scratch: Path | None = None, toc: Path = TOC) -> dict[str, float]:
    """Execute chapters (see the module docstring), record their wall times, build the site.
    Returns chapter -> wall time (s).

    Where each run writes (``mode``):

    * ``paper``, no ``-p``: the notebooks in place, timings and results into ``data/``;
    * ``paper`` with ``-p`` (``custom``): the committed book shows only the paper profile, so the
      chapters execute into ``_build/custom/site/`` (a copy of the book) on ``_build/custom/data``:
      a copy of ``data/`` whose ``runs/`` is ``data/runs`` itself (stored runs are read, new ones
      added; a record is never overwritten), so status records, cached tables and timings of the
      custom run never reach ``data/``;
    * ``smoke``: into ``_build/smoke/site/`` on a fresh, empty store ``_build/smoke/data``.
    """
    todo = plan(names, profile, overrides, toc)
    toc = Path(toc)
    mode = "smoke" if profile == "smoke" else "custom" if overrides else "paper"
    paper_root = paper_store(toc) if profile == "paper" else None
    if paper_root is not None:
        check_data(paper_root)
    scratch = Path(scratch) if scratch is not None else toc.parent / "_build" / mode
    source, root = toc.parent, paper_root
    if mode != "paper":  # a copy of the book, and a store of its own: the committed files stay as they are
        shutil.rmtree(scratch, ignore_errors=True)
        source, root = scratch / "site", scratch / "data"
        source.mkdir(parents=True)
        for f in SITE_FILES:
            src = toc.parent / f
            if src.is_dir():
                shutil.copytree(src, source / f, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "_build"))
            elif src.exists():
                shutil.copy2(src, source / f)
        root.mkdir(parents=True)
    if mode == "custom":
        for item in paper_root.iterdir() if paper_root.is_dir() else []:
            if item.name != "runs":
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, root / item.name)
        (paper_root / "runs").mkdir(parents=True, exist_ok=True)
        os.symlink((paper_root / "runs").resolve(), root / "runs", target_is_directory=True)
        changed = ", ".join(f"{k}={v}" for k, v in overrides)
        print(f"[book] parameters set with -p ({changed}): the committed book shows the paper profile only, "
              f"so this run executes into {source / 'chapters'} on a copy of {paper_root} (sharing its "
              f"runs/, where new runs are added); the notebooks of {toc.parent} and the rest of {paper_root} "
              "stay unchanged", file=sys.stderr, flush=True)
    env = os.environ.get("SYMLIB_DATA")
    os.environ["SYMLIB_DATA"] = str(root)
    kernel_store = RunStore(root)
    url = repository_url(toc.parent)
    walls = {}
    try:
        for name, (notebook, params) in todo.items():
            before = len(kernel_store.keys())
            dest = source / notebook.relative_to(toc.parent)
            print(f"[book] {name} ({profile}) …", file=sys.stderr, flush=True)
            walls[name] = execute(name, notebook, params, dest, scratch, url)
            record_timing(root, profile, name, walls[name], len(kernel_store.keys()) - before)
            print(f"[book] {name}: {walls[name]:.1f} s", file=sys.stderr, flush=True)
    finally:
        if env is None:
            os.environ.pop("SYMLIB_DATA", None)
        else:
            os.environ["SYMLIB_DATA"] = env
    if build:
        build_site(source)
    return walls


def build_site(source: Path = REPO, output: Path | None = None) -> Path:
    """``jupyter-book build SOURCE --all -W --keep-going`` (``--all``: an incremental build would not
    re-report the warnings of unchanged pages); returns the HTML folder."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(source), "--all", "-W", "--keep-going"]
    if output is not None:
        cmd += ["--path-output", str(output)]
    rc = subprocess.run(cmd).returncode
    if rc:
        raise SystemExit(f"python -m symlib book: jupyter-book build failed (exit {rc}); see its warnings above")
    html = Path(output or source) / "_build" / "html"
    print(f"[book] site: {html / 'index.html'}", file=sys.stderr)
    return html


# ----------------------------------------------------------------------------- intro tables


def timings_table(root: Path | None = None) -> pd.DataFrame:
    """Recorded wall time of each chapter per profile (rows in ``_toc.yml`` order); empty if
    nothing was recorded yet.  Used by the intro."""
    path = Path(root or default_root()) / "book" / "timings.json"
    data = read_json(path) if path.exists() else {}
    rows = []
    for name in chapters():
        row = {"chapter": name}
        for profile in PROFILES:
            t = data.get(profile, {}).get(name)
            row[f"{profile} (s)"] = t["wall_s"] if t else None
            if profile == "paper":
                row["runs computed"] = t["new_runs"] if t else None
                row["recorded"] = f"{t['date']}, {t['cpus']} CPUs" if t else None
        rows.append(row)
    return pd.DataFrame(rows)


def compute_table(root: Path | None = None, total: bool = False) -> pd.DataFrame:
    """Per experiment of :mod:`symlib.experiments`: runs in the store and the CPU time they took
    when computed (what re-running it from scratch costs); runs trained on a GPU count apart, as
    hours of their wall time (:func:`symlib.runs.trained_on`).  Used by the intro.  ``total`` adds a
    row that counts each distinct run once (experiments share runs: figure 7's plain and + KQ
    curves are figure 2's).  The store is read once."""
    from .experiments import EXPERIMENTS, experiment
    grids = {name: {c.key: c for c in experiment(name, "paper")} for name in EXPERIMENTS}
    every = {k: c for grid in grids.values() for k, c in grid.items()}
    done = {r.key: r for r in RunStore(root).load(every.values())}

    def row(name, keys):
        have = [done[k] for k in keys if k in done]
        gpu = [trained_on(r.provenance).startswith("cuda") for r in have]
        return {"experiment": name, "runs": len(keys), "stored": len(have),
                "CPU hours": _cpu_hours([r for r, g in zip(have, gpu) if not g]),
                "GPU hours": round(sum(r.wall_time_s for r, g in zip(have, gpu) if g) / 3600, 2)}
    rows = [row(name, grid) for name, grid in grids.items()]
    if total:
        rows.append(row("**distinct runs**", every))
    return pd.DataFrame(rows)


def _cpu_hours(records) -> float:
    """Wall time × threads of ``records``, in hours (2 decimals)."""
    return round(sum(r.wall_time_s * (r.provenance.get("threads") or 1) for r in records) / 3600, 2)


README_MARKERS = ("<!-- compute-table: written by `python -m symlib book --readme-table` -->",
                  "<!-- /compute-table -->")


def compute_markdown(root: Path | None = None) -> str:
    """:func:`compute_table` with its total row, as Markdown (the README's block)."""
    return compute_table(root, total=True).to_markdown(index=False)


def readme_table(readme: Path = REPO / "README.md", root: Path | None = None, write: bool = False) -> bool:
    """Compare (or, with ``write``, replace) the block between :data:`README_MARKERS` in the
    README with the compute table of the store.  Returns whether it was already up to date."""
    text = Path(readme).read_text(encoding="utf-8")
    start, end = README_MARKERS
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"{readme} must hold the markers {start!r} and {end!r} once each, in that order")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    new = f"{head}{start}\n{compute_markdown(root)}\n{end}{tail}"
    if write and new != text:
        atomic_write_text(Path(readme), new)
    return new == text


# ----------------------------------------------------------------------------- command line


def register(sub) -> None:
    p = sub.add_parser("book", help="execute the chapters with papermill and build the site",
                       description="Execute the chapters of _toc.yml with papermill (paper: in place; "
                                   "smoke: into _build/smoke), then run jupyter-book build.")
    p.add_argument("chapter", nargs="*", help="chapters to execute (default: all; in _toc.yml order, status and intro last)")
    p.add_argument("--profile", default="paper", help=f"one of {', '.join(PROFILES)} (default paper)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="set a parameter of the chapters' parameters cell (a Python literal)")
    p.add_argument("--no-build", action="store_true", help="execute only, do not build the site")
    p.add_argument("--readme-table", action="store_true",
                   help="only rewrite README.md's table of runs and CPU hours per experiment from the store")
    p.set_defaults(run=_run)


def _run(args) -> None:
    if args.readme_table:
        if args.chapter or args.parameter:
            raise ValueError("--readme-table takes no chapters or parameters")
        up_to_date = readme_table(write=True)
        print("README.md compute table " + ("already up to date" if up_to_date else "rewritten"), file=sys.stderr)
        return
    run(args.chapter, args.profile, [tuple(x) for x in args.parameter], build=not args.no_build, toc=TOC)
