"""Sweeps: skip what exists, resume after interruption, same records locally and on Dask."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import symlib.sweep as sweep_mod
from symlib import ModelConfig, TrainConfig
from symlib.experiments import EXPERIMENTS, experiment
from symlib.store import RunStore
from symlib.sweep import grid, missing, run_sweep

TINY = {"mlp": ModelConfig(kind="mlp", hidden=8)}
TRAIN = TrainConfig(epochs=6, eval_every=3)
DATA = {"n_test": 32, "test_alphabet": 32, "n_val": 16, "val_alphabet": 16}


def configs():
    return grid("same_different", TINY, n=[4, 8, 16], seeds=[0, 1], train=TRAIN, data=DATA)


def test_grid_is_the_cross_product():
    cs = configs()
    assert len(cs) == 6 and len({c.key for c in cs}) == 6
    assert sorted({(c.data.n, c.seed) for c in cs}) == [(n, s) for n in (4, 8, 16) for s in (0, 1)]


def test_interrupted_sweep_resumes_without_losing_or_redoing(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    calls = []
    real_fit = sweep_mod.fit

    def flaky_fit(config, **kw):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the sweep is killed during its 4th run
        calls.append(config.key)
        return real_fit(config, **kw)

    monkeypatch.setattr(sweep_mod, "fit", flaky_fit)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(configs(), store, workers=1, progress=False)
    assert sorted(store.keys()) == sorted(calls)                     # every finished run kept
    assert not list((tmp_path / "runs").glob(".*"))                   # no temporary leftovers
    monkeypatch.setattr(sweep_mod, "fit", real_fit)
    done_before = set(store.keys())
    recomputed = []
    monkeypatch.setattr(sweep_mod, "fit", lambda c, **kw: recomputed.append(c.key) or real_fit(c, **kw))
    results = run_sweep(configs(), store, workers=1, progress=False)
    assert len(results) == 6 and not (set(recomputed) & done_before) and len(recomputed) == 3
    assert missing(configs(), store) == []


def test_each_run_of_a_sweep_keeps_its_checkpoint_beside_the_records(tmp_path, monkeypatch):
    """A sweep hands every run its own checkpoint file, so that a run killed mid-way resumes
    there (the resuming itself: tests/test_training.py); none is left once the records are in."""
    store, seen = RunStore(tmp_path), {}
    real_fit = sweep_mod.fit
    monkeypatch.setattr(sweep_mod, "fit", lambda c, **kw: seen.setdefault(c.key, kw["checkpoint"]) and real_fit(c, **kw))
    run_sweep(configs()[:2], store, workers=1, progress=False)
    assert seen == {c.key: str(store.checkpoint_path(c.key)) for c in configs()[:2]}
    assert all(Path(p).parent == tmp_path / "runs" for p in seen.values())
    assert not list((tmp_path / "runs").glob(".*"))


def test_threads_per_run_reach_the_runs_and_their_records(tmp_path, capsys):
    """``threads`` sets torch's threads in every run (the record's provenance says so); a count
    that is not a positive integer is refused before anything runs, in Python and on the CLI."""
    from symlib.cli import main
    store = RunStore(tmp_path)
    results = run_sweep(configs()[:2], store, workers=1, progress=False, threads=2)
    assert [r.provenance["threads"] for r in results] == [2, 2]
    assert [r.provenance["threads"] for r in run_sweep(configs()[2:3], store, workers=1, progress=False)] == [1]
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            run_sweep(configs()[3:], store, workers=1, progress=False, threads=bad)
    assert len(store.keys()) == 3
    assert main(["sweep", "copy", "--threads", "0", "--dry-run", "--data", str(tmp_path)]) == 2
    assert "--threads must be a positive integer; got 0" in capsys.readouterr().err


def test_process_pool_gives_the_same_records_as_in_process(tmp_path):
    cs = configs()[:2]
    a = run_sweep(cs, RunStore(tmp_path / "a"), workers=1, progress=False)
    b = run_sweep(cs, RunStore(tmp_path / "b"), workers=2, progress=False)
    assert [(r.key, r.metrics, r.curve) for r in a] == [(r.key, r.metrics, r.curve) for r in b]


def test_dask_cluster_gives_the_same_records_as_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    cs = configs()[:3]
    local = run_sweep(cs, RunStore(tmp_path / "local"), workers=1, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = run_sweep(cs, RunStore(tmp_path / "dask"), scheduler=client, progress=False)
    assert [(r.key, r.metrics, r.curve) for r in local] == [(r.key, r.metrics, r.curve) for r in remote]


def test_every_experiment_has_a_smoke_profile():
    for name in EXPERIMENTS:
        cs = experiment(name, "smoke")
        # n is at least the number of templates: 128 for majority-8
        assert cs and all(c.train.epochs <= 20 and c.data.n <= 128 and c.model.dim <= 16 for c in cs), name


def test_unknown_experiment_and_profile():
    with pytest.raises(ValueError, match="unknown experiment 'nope'; allowed"):
        experiment("nope")
    with pytest.raises(ValueError, match="unknown profile 'full'; allowed: paper, smoke"):
        experiment("protocol", "full")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_worker_dies_with_a_killed_sweep(tmp_path):
    """A process that ran the pool's initializer is killed by the kernel when its parent is
    SIGKILLed — a killed sweep leaves no orphan worker training on."""
    (tmp_path / "helper.py").write_text(
        "import os, time\n"
        "from symlib.sweep import _die_with_parent\n"
        "def child(ready):\n"
        "    _die_with_parent(os.getppid())\n"
        "    open(ready, 'w').write(str(os.getpid()))\n"
        "    time.sleep(120)\n")
    ready = tmp_path / "ready"
    script = (f"import sys, time, multiprocessing\nsys.path.insert(0, {str(tmp_path)!r})\nimport helper\n"
              "if __name__ == '__main__':\n"
              f"    multiprocessing.get_context('spawn').Process(target=helper.child, args=({str(ready)!r},)).start()\n"
              "    time.sleep(120)\n")
    (tmp_path / "parent.py").write_text(script)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")])
    try:
        for _ in range(1200):
            if ready.exists() and ready.read_text():
                break
            time.sleep(0.1)
        child = int(ready.read_text())
    finally:
        parent.kill()
        parent.wait()
    for _ in range(100):
        stat = Path(f"/proc/{child}/stat")
        if not stat.exists() or stat.read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        os.kill(child, 9)
        pytest.fail("the child outlived its SIGKILLed parent")


def test_pool_workers_run_the_parent_death_initializer(tmp_path, monkeypatch):
    seen = {}

    class Pool(sweep_mod.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sweep_mod, "ProcessPoolExecutor", Pool)
    configs = grid("same_different", [ModelConfig(dim=8, heads=1, dim_head=8, mlp_dim=8)], [4, 8], [0],
                   TrainConfig(epochs=2))
    run_sweep(configs, RunStore(tmp_path), workers=2, progress=False)
    assert seen["initializer"] is sweep_mod._die_with_parent
    assert seen["initargs"] == (os.getpid(),)


def test_worker_whose_sweep_already_died_exits():
    """The race the signal cannot cover: the sweep is killed after spawning a worker but before
    the worker's initializer runs. The worker then finds a parent other than the sweep's pid and
    exits instead of training on."""
    def worker(expected_parent: str) -> subprocess.CompletedProcess:
        code = (f"import os\nfrom symlib.sweep import _die_with_parent\n_die_with_parent({expected_parent})\n"
                "print('still running')\n")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    done = worker("os.getppid() + 1")  # not our parent: as if the sweep had died
    assert done.returncode == 1 and "still running" not in done.stdout
    alive = worker("os.getppid()")
    assert alive.returncode == 0 and "still running" in alive.stdout


def test_cli_sweeps_several_experiments_in_one_pool(tmp_path, capsys):
    """`sweep A B` computes the union of both grids once (shared runs are not done twice)."""
    from symlib.cli import main
    from symlib.experiments import experiment
    assert main(["sweep", "copy_protocol", "copy_bf16", "--profile", "smoke", "--workers", "1",
                 "--data", str(tmp_path)]) == 0
    keys = {c.key for name in ("copy_protocol", "copy_bf16") for c in experiment(name, "smoke")}
    assert set(RunStore(tmp_path).keys()) == keys
    assert "copy_protocol + copy_bf16 (smoke)" in capsys.readouterr().err


def test_the_sweep_command_runs_without_the_notebook_stack(tmp_path):
    """A GPU machine may have torch and Lightning but not Jupyter: `python -m symlib sweep` must
    not import nbformat or papermill (symlib.book imports them where it uses them)."""
    blocker = ("import sys\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('nbformat', 'papermill', 'nbclient', 'jupyter_book'):\n"
               "            raise ImportError('blocked ' + name)\n"
               "sys.meta_path.insert(0, Block())\n"
               "from symlib.cli import main\n"
               f"sys.exit(main(['sweep', 'copy', '--dry-run', '--data', {str(tmp_path)!r}]))\n")
    out = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(r"copy \(paper\): \d+ runs, 0 in .* to compute", out.stderr)  # the dry run reports on stderr


def test_a_script_that_calls_run_sweep_unguarded_gets_a_clear_error(tmp_path):
    """The workers are spawned and import the script that started the sweep: without
    ``if __name__ == "__main__":`` each would start a sweep of its own.  The worker says why it
    stops, the sweep says what died and that it can resume, and no run is stored half-done."""
    script = (f"import sys\nsys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
              "from symlib import ModelConfig, TrainConfig\nfrom symlib.store import RunStore\n"
              "from symlib.sweep import grid, run_sweep\n"
              "cs = grid('same_different', {'mlp': ModelConfig(kind='mlp', hidden=8)}, n=[4, 8], seeds=[0],\n"
              "          train=TrainConfig(epochs=2), data={'n_test': 8, 'test_alphabet': 8, 'n_val': 4, 'val_alphabet': 4})\n"
              f"run_sweep(cs, RunStore({str(tmp_path / 'data')!r}), workers=2, progress=False)\n")
    (tmp_path / "unguarded.py").write_text(script)
    out = subprocess.run([sys.executable, str(tmp_path / "unguarded.py")], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "calls run_sweep at its top level; call it under `if __name__ == \"__main__\":`" in out.stderr
    assert "RuntimeError: a worker process of the sweep died" in out.stderr and "run the sweep again" in out.stderr
    assert not list((tmp_path / "data").glob("runs/*.json"))


def test_run_sweep_refuses_to_start_inside_a_worker_importing_its_script(monkeypatch):
    import multiprocessing
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(RuntimeError, match=r"worker process imported a script that calls run_sweep"):
        run_sweep(configs())
