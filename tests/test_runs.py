"""What a run is, without Lightning (symlib.runs): reading records must not load the trainer."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import symlib
from symlib import runs


@pytest.mark.parametrize("module", ["symlib", "symlib.runs", "symlib.store", "symlib.experiments",
                                    "symlib.status", "symlib.plots"])
def test_reading_records_does_not_import_lightning(module):
    code = (f"import sys, {module}\n"
            "from symlib.store import RunStore\n"
            "RunStore().keys()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_fit_is_still_symlib_fit():
    from symlib.training import fit
    assert symlib.fit is fit
    from symlib import fit as again
    assert again is fit
    import symlib as S
    assert S.training.fit is fit


def test_one_version():
    pyproject = tomllib.loads((Path(symlib.__file__).parent.parent / "pyproject.toml").read_text())
    assert symlib.__version__ == runs.VERSION == pyproject["project"]["version"]


def test_provenance_names_lightning_without_importing_it():
    import importlib.metadata
    p = runs.provenance(1, "cpu")
    assert p["lightning"] == importlib.metadata.version("lightning") and p["symlib"] == runs.VERSION


@pytest.mark.parametrize("value, low, high, message", [
    (-1, 0, None, "seed must be an integer >= 0; got -1"), (True, 0, None, "got True"), (1.0, 0, None, "got 1.0"),
    (4, 0, 3, "seed must be an integer in 0..3; got 4")])
def test_one_integer_range_check_reads_the_same_everywhere(value, low, high, message):
    from symlib.checks import int_in
    with pytest.raises(ValueError, match=re.escape(message)):
        int_in("seed", value, low, high)
    int_in("seed", low, low, high)  # the bound itself is allowed


def test_git_commit_of_a_copy_without_git_comes_from_the_environment(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(runs, "_GIT", {})
    monkeypatch.setattr(subprocess, "run", no_git)
    monkeypatch.delenv("SYMLIB_GIT_COMMIT", raising=False)
    assert runs.git_commit() is None
    monkeypatch.setattr(runs, "_GIT", {})
    monkeypatch.setenv("SYMLIB_GIT_COMMIT", "1f0eca1")
    assert runs.git_commit() == "1f0eca1-copy" and runs.provenance(1, "cuda:0")["git_commit"] == "1f0eca1-copy"


def test_trained_on_reads_the_device_and_the_gpu_runs_recorded_before_the_fix():
    assert runs.trained_on({"device": "cpu", "torch": "2.13.0+cpu"}) == "cpu"
    assert runs.trained_on({"device": "cuda:0", "torch": "2.11.0+cu130"}) == "cuda:0"
    assert runs.trained_on({"device": "cpu", "torch": "2.11.0+cu130"}) == "cuda"  # recorded before f5b812d
    assert runs.trained_on({}) == "cpu"
