"""Issue 20, "nothing overwrites the paper's results, every input either runs or is refused
clearly": one test per defect, named after it (d01 … d13, most severe first).

Book tests run a one-chapter book in ``tmp_path`` (its own ``_toc.yml``, ``data/`` and ``_build/``),
so no committed notebook or record is ever at risk, even before the fixes."""

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

import symlib.store as store_mod
import symlib.sweep as sweep_mod
from symlib import book, status
from symlib.cli import main
from symlib.data import DataConfig
from symlib.experiments import experiment
from symlib.models import ModelConfig
from symlib.runs import RunResult, TrainConfig, run_config
from symlib.store import REPO_DATA, CorruptRecord, RunStore
from symlib.sweep import grid, run_sweep
from symlib.tasks import from_spec, get_task
from symlib.templates import make_task
from symlib.training import fit

TINY = {"mlp": ModelConfig(kind="mlp", hidden=8)}
TRAIN = TrainConfig(epochs=4, eval_every=2)
DATA = {"n_test": 16, "test_alphabet": 16, "n_val": 8, "val_alphabet": 8}


def tiny_configs(seeds=(0, 1)):
    return grid("same_different", TINY, n=[4, 8, 16], seeds=list(seeds), train=TRAIN, data=DATA)


def write_notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)


def tiny_book(root: Path, *cells: str) -> Path:
    """A book of one chapter, ``chapters/ch.ipynb`` (parameters ``profile`` and ``n``), laid out
    like the repository (its paper store is ``root/data``).  Returns its ``_toc.yml``."""
    (root / "chapters").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: chapters/ch\n")
    (root / "_config.yml").write_text("title: tiny\n")
    (root / "references.bib").write_text("")
    write_notebook(root / "chapters" / "ch.ipynb", 'profile = "paper"\nn = 64',
                   *(cells or ['print("n =", n)']))
    return root / "_toc.yml"


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


class Ran(Exception):
    """Raised by a stub in place of executing a chapter: the book got as far as executing."""


# ----------------------------------------------------------------------------- 1


def test_d01_paper_book_with_symlib_data_elsewhere_is_refused(tmp_path, monkeypatch, capsys):
    def stub(*args, **kwargs):
        raise Ran
    monkeypatch.setattr(book, "execute", stub)
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path / "scratch-store"))
    before = {p: p.read_bytes() for p in book.chapters().values()}
    assert main(["book", "status", "--no-build"]) == 2
    err = capsys.readouterr().err
    assert "SYMLIB_DATA" in err and str(tmp_path / "scratch-store") in err and str(REPO_DATA) in err
    assert "--profile smoke" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in book.chapters().values()} == before
    assert not (tmp_path / "scratch-store").exists()
    # the repository's own store, however spelled, is accepted (the stub stops before anything runs)
    monkeypatch.setenv("SYMLIB_DATA", str(REPO_DATA / "runs" / ".."))
    with pytest.raises(Ran):
        main(["book", "status", "--no-build"])


# ----------------------------------------------------------------------------- 2


def test_d02_parameter_overrides_never_write_the_committed_book(tmp_path, monkeypatch, capsys):
    toc = tiny_book(tmp_path, 'from symlib import status\nfrom symlib.store import RunStore\n'
                              'print("n =", n)\nprint("runs:", RunStore().runs.resolve())\n'
                              'status.record("mlp_trivial", f"n = {n}", "reproduced")')
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path / "data"))  # the tiny book's own paper store
    chapter = tmp_path / "chapters" / "ch.ipynb"
    committed = chapter.read_bytes()
    walls = book.run(["ch"], "paper", [("n", "32")], build=False, toc=toc)
    assert set(walls) == {"ch"}
    assert chapter.read_bytes() == committed                                  # the committed notebook
    assert not (tmp_path / "data" / "book" / "timings.json").exists()         # and the committed timings
    assert not (tmp_path / "data" / "status").exists()                        # and the paper's verdicts
    custom = tmp_path / "_build" / "custom"
    text = (custom / "site" / "chapters" / "ch.ipynb").read_text()
    assert "n = 32" in text and "n = 64" not in text.split("injected-parameters")[-1]
    assert f"runs: {(tmp_path / 'data' / 'runs').resolve()}" in text           # runs are shared, read and added
    assert json.loads((custom / "data" / "book" / "timings.json").read_text())["paper"]["ch"]["wall_s"] >= 0
    assert json.loads((custom / "data" / "status" / "mlp_trivial.json").read_text())["measured"] == "n = 32"
    err = capsys.readouterr().err
    assert "n=32" in err and str(custom / "site" / "chapters") in err and "unchanged" in err
    # without overrides the paper profile executes in place, as before
    book.run(["ch"], "paper", build=False, toc=toc)
    assert chapter.read_bytes() != committed and "n = 64" in chapter.read_text()
    assert "ch" in json.loads((tmp_path / "data" / "book" / "timings.json").read_text())["paper"]


# ----------------------------------------------------------------------------- 3


def test_d03_huge_sizes_are_refused_before_allocating(capsys):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"only 2 pairwise non-equivalent templates exist"):
        get_task("random_templates", r=4000, length=2, n_wildcards=2)      # looped 4e6 times before
    with pytest.raises(ValueError, match=r"r must be an integer in 1\.\.4096"):
        get_task("random_templates", r=10 ** 11, length=5, n_wildcards=3)
    with pytest.raises(ValueError, match=r"length must be an integer in 1\.\.64"):
        get_task("random_templates", r=2, length=10 ** 9, n_wildcards=3)
    with pytest.raises(ValueError, match=r"k must be an integer in 2\.\.13 .*4096 templates"):
        get_task("majority", k=22)                                         # 4.9 GB before
    with pytest.raises(ValueError, match=r"n must be at most 1048576"):
        DataConfig(n=10 ** 10)
    with pytest.raises(ValueError, match=r"test_alphabet must be at most 1048576"):
        DataConfig(n=4, test_alphabet=10 ** 12)
    assert time.perf_counter() - start < 5
    assert main(["train", "--task", "majority", "--param", "k=40", "--n", "4"]) == 2
    assert "k must be an integer in 2..13" in capsys.readouterr().err
    assert len(get_task("majority", k=13).templates) == 4096                # the limit itself works


# ----------------------------------------------------------------------------- 4


@pytest.mark.parametrize("bad", [
    {"lr": math.inf}, {"lr": math.nan}, {"weight_decay": math.nan}, {"stop_train_loss": math.inf}])
def test_d04_non_finite_train_options_are_refused(bad):
    with pytest.raises(ValueError, match="finite"):
        TrainConfig(**bad)


@pytest.mark.parametrize("bad", [
    {"identity_scale": math.inf}, {"logit_scale": math.inf}, {"init_scale": math.inf}, {"init_scale": math.nan},
    {"mimetic": (math.nan, math.nan)}, {"mimetic": (1.0, math.inf)}, {"mimetic": ("a", 1.0)}])
def test_d04_non_finite_model_options_are_refused(bad):
    with pytest.raises(ValueError, match="finite"):
        ModelConfig(**bad)


@pytest.mark.parametrize("args", [["--lr", "inf"], ["--identity-scale", "inf"], ["--logit-scale", "inf"],
                                  ["--init-scale", "inf"], ["--mimetic", "nan", "nan"]])
def test_d04_non_finite_cli_numbers_exit_2(args, capsys):
    assert main(["train", "--task", "aba_abb", "--n", "4", "--epochs", "1", *args]) == 2
    err = capsys.readouterr().err
    assert "finite" in err and "Traceback" not in err


def test_d04_a_diverged_run_prints_strict_json_and_says_so(monkeypatch, capsys):
    import symlib.cli as cli
    nan = math.nan

    def diverging(task, model, train, data, seed=0, **kwargs):
        config = run_config(task, model, train, data, seed)
        curve = [{"epoch": 1, "train_loss": 2.0, "test_loss": 1.0}, {"epoch": 2, "train_loss": nan, "test_loss": nan}]
        return RunResult(config.key, config.to_dict(), {"train_loss": nan, "test_loss": math.inf}, curve, 0.1, {})
    monkeypatch.setattr(cli, "fit", diverging)
    assert main(["train", "--task", "aba_abb", "--n", "4", "--epochs", "2", "--lr", "10"]) == 0
    out, err = capsys.readouterr()

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")
    printed = json.loads(out, parse_constant=refuse)                       # strict JSON
    assert printed["metrics"] == {"train_loss": None, "test_loss": None}
    assert "diverged" in err and "epoch 2" in err


# ----------------------------------------------------------------------------- 5


def test_d05_an_unwritable_store_is_refused_before_computing(tmp_path, monkeypatch, capsys):
    computed = []
    monkeypatch.setattr(sweep_mod, "fit", lambda c, **kw: computed.append(c.key))
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    assert main(["sweep", "protocol", "--profile", "smoke", "--workers", "1", "--data", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert "cannot write to the run store" in err and str(a_file) in err and "Traceback" not in err

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(store_mod.tempfile, "mkstemp", read_only)
    with pytest.raises(ValueError, match=r"cannot write to the run store .*Permission denied"):
        run_sweep(tiny_configs(), RunStore(tmp_path / "ro"), workers=1, progress=False)
    monkeypatch.undo()
    monkeypatch.setattr(sweep_mod, "fit", lambda c, **kw: computed.append(c.key))

    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(store_mod.os, "fsync", full)
    with pytest.raises(ValueError, match=r"cannot write to the run store .*No space left on device"):
        run_sweep(tiny_configs(), RunStore(tmp_path / "full"), workers=1, progress=False)
    assert computed == []                                                  # nothing was computed in vain
    assert not [p for p in (tmp_path / "full" / "runs").iterdir()]          # and the probe left nothing


# ----------------------------------------------------------------------------- 6


@pytest.mark.parametrize("templates", [
    [(("yes",), 1), (("non",), -1)],                  # one multi-letter symbol each: was rebuilt as y e s
    [(("print", "α"), 1), (("echo", "α"), -1)],
    {"αβα": 1, "αββ": -1},
    {"α = 1 ; print ( α )": 1, "α = 2 ; print ( α )": -1},
])
def test_d06_custom_task_specs_round_trip_exactly(templates):
    task = make_task(templates)
    again = from_spec(json.loads(json.dumps(task.spec)))
    assert (again.templates, again.labels, again.kind, again.probs) == (task.templates, task.labels, task.kind, task.probs)
    result = fit(task, ModelConfig(kind="mlp", hidden=4), TrainConfig(epochs=1), DataConfig(n=4, **DATA))
    assert from_spec(result.config["task"]).templates == task.templates


def test_d06_existing_custom_specs_keep_their_hash():
    task = make_task({"αβα": 1, "αββ": -1})
    assert task.spec["templates"] == ["α β α", "α β β"]                    # stored configs stay valid


# ----------------------------------------------------------------------------- 7


def test_d07_chapter_parameter_values_are_validated():
    assert book.plan(["regression"], "paper", [("seeds", "[0]")])["regression"][1]["seeds"] == [0]
    assert book.plan(["regression"], "paper", [("seeds", "None")])["regression"][1]["seeds"] is None
    assert book.plan(["regression"], "paper", [("figures", '["fig2"]')])["regression"][1]["figures"] == ["fig2"]
    for chapter, name, raw, message in [
        ("template_tasks", "n", "-5", "must be > 0"),
        ("template_tasks", "n", "0", "must be > 0"),
        ("template_tasks", "seeds", "[]", "must not be empty"),
        ("template_tasks", "seeds", "[-1]", "integers >= 0"),
        ("template_tasks", "seeds", "[0, 0]", "distinct"),
        ("template_tasks", "n_diversity", "[16, -1]", "must be > 0"),
        ("regression", "seeds", "[]", "must not be empty"),
        ("regression", "seeds", "3", "a list of distinct integers >= 0"),
        ("regression", "threshold", "1e999", "finite"),
        ("regression", "figures", '["nope"]', "unknown figure 'nope'; allowed: protocol"),
        ("kernel", "a_values", "[-1.0]", "must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            book.plan([chapter], "paper", [(name, raw)])


# ----------------------------------------------------------------------------- 8


def test_d08_orphan_temp_files_are_removed(tmp_path):
    store = RunStore(tmp_path)
    store.runs.mkdir(parents=True)
    orphan = store.runs / f".0123456789abcdef.json.{dead_pid()}.x1y2.tmp"   # its writer was killed
    live = store.runs / f".fedcba9876543210.json.{os.getpid()}.a1b2.tmp"    # a write in progress
    old_style = store.runs / ".0011223344556677.json.q9w8.tmp"               # pre-pid name, an hour old
    recent_old_style = store.runs / ".8899aabbccddeeff.json.z7z7.tmp"
    for p in (orphan, live, old_style, recent_old_style):
        p.write_text("{")
    os.utime(old_style, (time.time() - 7200, time.time() - 7200))
    run_sweep(tiny_configs([0])[:1], store, workers=1, progress=False)
    assert not orphan.exists() and not old_style.exists()
    assert live.exists() and recent_old_style.exists()


def test_d08_dry_run_does_not_count_corrupt_records_as_stored(tmp_path, capsys):
    config = experiment("protocol", "smoke")[0]
    bad = RunStore(tmp_path).path(config.key)
    bad.parent.mkdir(parents=True)
    bad.write_text('{"key": "' + config.key + '", "conf')                  # a truncated record
    assert main(["sweep", "protocol", "--profile", "smoke", "--data", str(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not valid JSON" in err and "delete it" in err


# ----------------------------------------------------------------------------- 9


def test_d09_a_directory_named_like_a_record_is_a_clear_error(tmp_path, capsys):
    config = experiment("protocol", "smoke")[0]
    folder = RunStore(tmp_path).path(config.key)
    folder.mkdir(parents=True)
    with pytest.raises(CorruptRecord, match="not a file"):
        RunStore(tmp_path).load()
    assert main(["sweep", "protocol", "--profile", "smoke", "--data", str(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "not a file" in err and "Traceback" not in err


@pytest.mark.parametrize("text", ['{"claim": "mlp_trivial"}', "[]", '"x"', '{"measured": 1, "verdict": "maybe"}'])
def test_d09_a_malformed_status_record_is_a_clear_error(tmp_path, text):
    path = tmp_path / "status" / "mlp_trivial.json"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ValueError, match="malformed status record") as e:
        status.table(tmp_path)
    assert str(path) in str(e.value) and "re-run chapter 'regression'" in str(e.value)


@pytest.mark.parametrize("args", [["--n", "0"], ["--epochs", "0"], ["--repeats", "0"], ["--threads", "-1"],
                                  ["--n", "10000000000"]])
def test_d09_bad_bench_options_exit_2(args, capsys):
    from symlib import bench
    with pytest.raises(SystemExit) as e:
        bench.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert args[0] in err and "Traceback" not in err


def test_d09_ctrl_c_during_the_book_is_a_clear_message(tmp_path, monkeypatch, capsys):
    import papermill
    toc = tiny_book(tmp_path)
    monkeypatch.setattr(book, "TOC", toc)
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path / "data"))  # the tiny book's own paper store

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    before = (tmp_path / "chapters" / "ch.ipynb").read_bytes()
    try:
        rc = main(["book", "--no-build"])
    except KeyboardInterrupt:
        rc = "a traceback"
    assert rc == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "'ch'" in err and "unchanged" in err
    assert (tmp_path / "chapters" / "ch.ipynb").read_bytes() == before
    assert not list((tmp_path / "_build" / "paper").glob("*.running.ipynb"))


# ----------------------------------------------------------------------------- 10


def test_d10_silent_no_ops_are_refused(tmp_path, capsys):
    assert main(["sweep", "protocol", "--profile", "smoke", "--seeds", "99", "--data", str(tmp_path), "--dry-run"]) == 2
    assert "no seed 99; its seeds: 0" in capsys.readouterr().err
    assert main(["sweep", "protocol", "--profile", "smoke", "--data", "", "--dry-run"]) == 2
    assert "--data must name a folder" in capsys.readouterr().err
    with pytest.raises(ValueError, match="run-store root must name a folder"):
        RunStore("")
    for flag in ("kq_identity", "vo_identity", "train_last_layer_only"):
        with pytest.raises(ValueError, match=f"model {flag} must be True or False; got 'no'"):
            ModelConfig(**{flag: "no"})
    assert ModelConfig(kq_identity=True).kq_identity is True


# ----------------------------------------------------------------------------- 11


def test_d11_records_are_readable_by_all(tmp_path):
    store = RunStore(tmp_path)
    path = store.put(fit(tiny_configs([0])[0]))
    assert path.stat().st_mode & 0o777 == 0o644


def test_d11_a_claim_is_held_by_a_live_process_only(tmp_path):
    store = RunStore(tmp_path)
    key = "0123456789abcdef"
    assert store.claim(key) and not store.claim(key)                       # held by this (live) process
    store.release(key)
    store.claim_path(key).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    assert store.claim(key)                                                # a dead holder is ignored
    assert json.loads(store.claim_path(key).read_text())["pid"] == os.getpid()
    store.release(key)
    assert not store.claim_path(key).exists()


def test_d11_a_sweep_waits_for_a_run_claimed_by_a_live_sweep(tmp_path):
    store = RunStore(tmp_path)
    config = tiny_configs([0])[0]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    store.runs.mkdir(parents=True)
    store.claim_path(config.key).write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))
    threading.Timer(1.0, other.kill).start()                               # the other sweep dies without a record
    start = time.perf_counter()
    results = run_sweep([config], store, workers=1, progress=False, poll=0.1)
    other.wait()
    assert time.perf_counter() - start >= 0.9 and [r.key for r in results] == [config.key]
    assert not store.claim_path(config.key).exists()


def test_d11_two_sweeps_on_one_store_compute_each_run_once(tmp_path):
    log, store = tmp_path / "computed.log", tmp_path / "store"
    script = f"""
import os, sys, time
import symlib.sweep as S
from symlib import ModelConfig, TrainConfig
from symlib.store import RunStore
real = S.fit
def logged(c, **kw):
    with open({str(log)!r}, "a") as f:
        f.write(c.key + "\\n")
    time.sleep(0.3)
    return real(c, **kw)
S.fit = logged
cs = S.grid("same_different", {{"mlp": ModelConfig(kind="mlp", hidden=8)}}, n=[4, 8, 16], seeds=[0, 1],
            train=TrainConfig(epochs=4, eval_every=2),
            data={{"n_test": 16, "test_alphabet": 16, "n_val": 8, "val_alphabet": 8}})
open(os.path.join({str(tmp_path)!r}, "ready-%d" % os.getpid()), "w").close()
while len([p for p in os.listdir({str(tmp_path)!r}) if p.startswith("ready-")]) < 2:
    time.sleep(0.02)
S.run_sweep(cs, RunStore({str(store)!r}), workers=1, progress=False)
"""
    sweeps = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(timeout=300) for p in sweeps] == [0, 0]
    computed = log.read_text().split()
    assert sorted(computed) == sorted(c.key for c in tiny_configs()), "a run was computed twice (or never)"
    assert sorted(RunStore(store).keys()) == sorted(c.key for c in tiny_configs())
    assert not list((store / "runs").glob(".*"))                           # no claim or temp file left


# ----------------------------------------------------------------------------- 12


def test_d12_cached_kernel_results_are_keyed_on_every_argument(tmp_path):
    """Every ``K.cached(name, cfg, compute)`` of the kernel chapter computes ``K.<function>(**cfg)``:
    the stored config is then, by construction, every argument of the computation."""
    import ast

    from symlib import kernel as K
    nb = nbformat.read(book.chapters()["kernel"], as_version=4)
    calls = [node for cell in nb.cells if cell.cell_type == "code"
             for node in ast.walk(ast.parse(cell.source))
             if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "cached"]
    assert len(calls) >= 5
    for call in calls:
        name, cfg, compute = call.args[:3]
        assert isinstance(cfg, ast.Name) and isinstance(compute, ast.Lambda), ast.unparse(call)
        body = compute.body
        assert (isinstance(body, ast.Call) and not body.args and len(body.keywords) == 1
                and body.keywords[0].arg is None and ast.unparse(body.keywords[0].value) == cfg.id), \
            f"{name.value}: computed by {ast.unparse(body)}, not K.<function>(**{cfg.id})"
    stored = json.loads((REPO_DATA / "kernel" / "majority_eigs.json").read_text())
    assert sorted({r["a"] for r in stored["result"]}) == stored["config"]["a_values"]
    rows = K.eigen_grids([{"name": "same_different"}], [1.0], [1.0], [0.0, 2.0], samples=2 ** 6, nodes=4)
    assert [r["a"] for r in rows] == [0.0, 2.0]
    cfg = {"tasks": [{"name": "same_different"}], "betas": [1.0], "gammas": [1.0], "a_values": [0.0],
           "samples": 2 ** 6, "nodes": 4}
    K.cached("x", cfg, lambda: K.eigen_grids(**cfg), root=tmp_path)
    with pytest.raises(ValueError, match="recompute it with recompute=True"):
        K.cached("x", {**cfg, "a_values": [0.0, 2.0]}, lambda: [], root=tmp_path)


# ----------------------------------------------------------------------------- 13


def test_d13_the_smoke_book_never_writes_the_data_store(tmp_path, monkeypatch):
    toc = tiny_book(tmp_path / "book")
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path / "data"))
    committed = (REPO_DATA / "book" / "timings.json").read_bytes()
    walls = book.run(None, "smoke", build=False, toc=toc, scratch=tmp_path / "smoke")
    assert set(walls) == {"ch"}
    assert not (tmp_path / "data").exists() and not (tmp_path / "book" / "data").exists()
    assert (REPO_DATA / "book" / "timings.json").read_bytes() == committed
    timings = json.loads((tmp_path / "smoke" / "data" / "book" / "timings.json").read_text())
    assert set(timings) == {"smoke"} and timings["smoke"]["ch"]["wall_s"] >= 0
