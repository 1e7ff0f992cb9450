"""The run store (symlib.store) and the status records (symlib.status): atomic writes, loud
errors on corrupt records, tidy frames — and committed records that the code still reproduces."""

import json
import random

import pytest

import symlib.store as store_mod
from symlib import DataConfig, ModelConfig, RunConfig, TrainConfig, fit
from symlib import status
from symlib.runs import run_config
from symlib.store import REPO_DATA, CorruptRecord, RunStore, cached_result

TINY = run_config("same_different", ModelConfig(kind="mlp", hidden=8), TrainConfig(epochs=4, eval_every=2),
                  DataConfig(n=4, n_val=8, val_alphabet=8, n_test=8, test_alphabet=8), seed=0)


@pytest.fixture(scope="module")
def tiny_result():
    return fit(TINY)


def test_put_get_roundtrip_and_env_root(tmp_path, monkeypatch, tiny_result):
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path))
    store = RunStore()
    assert store.root == tmp_path and TINY not in store and store.get(TINY) is None
    path = store.put(tiny_result)
    assert path == tmp_path / "runs" / f"{TINY.key}.json"
    assert TINY in store and store.keys() == [TINY.key]
    got = store.get(TINY)
    assert got.to_dict() == json.loads(json.dumps(tiny_result.to_dict()))
    for field in ("symlib", "git_commit", "torch", "lightning", "threads", "device"):
        assert field in got.provenance


def test_a_write_killed_half_way_leaves_nothing(tmp_path, monkeypatch, tiny_result):
    store = RunStore(tmp_path)

    def killed(src, dst):
        raise KeyboardInterrupt  # the process dies between writing the temp file and renaming it

    monkeypatch.setattr(store_mod.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        store.put(tiny_result)
    assert list((tmp_path / "runs").iterdir()) == []  # no record, no temporary file
    monkeypatch.undo()
    store.put(tiny_result)
    before = store.path(TINY.key).read_text()
    monkeypatch.setattr(store_mod.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        store.put(tiny_result)
    assert store.path(TINY.key).read_text() == before  # an overwrite killed half-way keeps the old record
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [f"{TINY.key}.json"]


def test_cached_result_computes_once_and_guards_its_config(tmp_path):
    calls, path = [], tmp_path / "sub" / "x.json"

    def compute():
        calls.append(1)
        return {"pair": (1, 2), "n": len(calls)}

    first = cached_result(path, {"a": (1,)}, compute)
    assert first == {"pair": [1, 2], "n": 1}  # through JSON: the same whether fresh or stored
    assert cached_result(path, {"a": [1]}, compute) == first and len(calls) == 1
    record = json.loads(path.read_text())
    assert set(record) == {"config", "result", "wall_time_s", "provenance"}
    assert record["config"] == {"a": [1]} and "git_commit" in record["provenance"]
    with pytest.raises(ValueError, match=r"computed with config \{'a': \[1\]\}.*recompute=True"):
        cached_result(path, {"a": 2}, compute)
    assert cached_result(path, {"a": 2}, compute, recompute=True)["n"] == 2
    assert cached_result(tmp_path / "y.json", {}, compute, store=False)["n"] == 3
    assert not (tmp_path / "y.json").exists()


@pytest.mark.parametrize("text, message", [("{broken", "corrupt result file"), ('{"rows": []}', "no 'result' field")])
def test_cached_result_names_a_bad_file(tmp_path, text, message):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as e:
        cached_result(path, {}, dict)
    assert str(path) in str(e.value) and path.read_text() == text


@pytest.mark.parametrize("mangle, message", [
    (lambda text, d: text[: len(text) // 2], "not valid JSON"),
    (lambda text, d: "", "not valid JSON"),
    (lambda text, d: json.dumps({k: v for k, v in d.items() if k != "metrics"}), r"missing field\(s\) \['metrics'\]"),
    (lambda text, d: json.dumps({**d, "key": "0" * 16}), "it holds key"),
    (lambda text, d: json.dumps({**d, "config": {**d["config"], "seed": 7}}), "does not hash to its key"),
    (lambda text, d: json.dumps({**d, "config": {**d["config"], "train": {"epochs": 1, "nope": 2}}}), "unreadable config"),
])
def test_corrupt_record_is_an_error_naming_it(tmp_path, tiny_result, mangle, message):
    store = RunStore(tmp_path)
    path = store.put(tiny_result)
    path.write_text(mangle(path.read_text(), tiny_result.to_dict()))
    for read in (lambda: store.get(TINY), store.load, store.frame, store.curves):
        with pytest.raises(CorruptRecord, match=message) as e:
            read()
        assert str(path) in str(e.value) and "delete it and re-run" in str(e.value)


def test_frames_are_tidy(tmp_path, tiny_result):
    store = RunStore(tmp_path)
    store.put(tiny_result)
    other = fit(RunConfig.from_dict({**TINY.to_dict(), "seed": 1}))
    store.put(other)
    runs = store.frame()
    assert len(runs) == 2 and runs["key"].is_unique
    for col in ("task", "model", "n", "seed", "model.kind", "train.epochs", "test_loss", "test_error",
                "train_loss", "wall_time_s", "threads"):
        assert col in runs.columns, col
    assert set(runs["seed"]) == {0, 1} and set(runs["model"]) == {"MLP"} and set(runs["task"]) == {"same_different"}
    curves = store.curves()
    assert len(curves) == len(tiny_result.curve) + len(other.curve)
    assert {"key", "epoch", "test_loss", "val_loss", "train_loss", "seed"} <= set(curves.columns)
    assert store.frame([TINY]).shape[0] == 1 and store.frame(["0" * 16]).empty  # missing configs: none


def test_status_records_and_table(tmp_path):
    t = status.table(tmp_path)
    assert list(t["claim"]) == list(status.CLAIMS) and set(t["verdict"]) == {"not yet run"}
    status.record("mlp_trivial", "test loss 1.00 ± 0.01 at every n", "reproduced", root=tmp_path)
    t = status.table(tmp_path).set_index("claim")
    assert t.loc["mlp_trivial", "verdict"] == "reproduced" and "1.00" in t.loc["mlp_trivial", "measured"]
    with pytest.raises(ValueError, match="unknown claim 'nope'; allowed"):
        status.record("nope", "x", "reproduced", root=tmp_path)
    with pytest.raises(ValueError, match="verdict must be one of"):
        status.record("mlp_trivial", "x", "maybe", root=tmp_path)
    (tmp_path / "status" / "mlp_trivial.json").write_text('{"claim": "mlp_tri')
    with pytest.raises(ValueError, match="corrupt status record .*mlp_trivial.json.*re-run chapter 'regression'"):
        status.table(tmp_path)



def test_status_progress_keeps_the_grey_badge_shows_the_runs_and_yields_to_record(tmp_path):
    status.progress("variable_binding", 11, 40, "plain test error 0.50 at n = 4096 (seed 0)", root=tmp_path)
    row = status.table(tmp_path).set_index("claim").loc["variable_binding"]
    assert row.verdict == "not yet run" and row.ours == "11 of 40 runs so far"
    assert row.measured == "In progress (11 of 40 runs): plain test error 0.50 at n = 4096 (seed 0)"
    assert 'data-verdict="not yet run"' in status.html_table(status.table(tmp_path))
    status.record("variable_binding", "plain 0.50 at n = 4096", "partial", root=tmp_path)
    assert status.table(tmp_path).set_index("claim").loc["variable_binding", "verdict"] == "partial"
    for done, total in ((40, 40), (-1, 40), (3.0, 40)):
        with pytest.raises(ValueError, match="0 <= done < total"):
            status.progress("variable_binding", done, total, "x", root=tmp_path)
    with pytest.raises(ValueError, match="unknown claim"):
        status.progress("nope", 1, 2, "x", root=tmp_path)
    with pytest.raises(ValueError, match="so_far must be"):
        status.progress("variable_binding", 1, 2, " ", root=tmp_path)
    # a "not yet run" record that is not a progress record is still malformed
    (tmp_path / "status" / "variable_binding.json").write_text('{"measured": "x", "verdict": "not yet run"}')
    with pytest.raises(ValueError, match="malformed status record"):
        status.table(tmp_path)

# ----------------------------------------------------------------------------- committed data

SAMPLE = 3          # records re-run per test session
CHEAPEST = 0.25     # drawn from this fraction of the committed records, by recorded wall time
MAX_WALL_S = 20.0   # and only from records that took at most this long


def cheapest_committed_records():
    store = RunStore(REPO_DATA)
    keys = store.keys()
    if not keys:
        return []
    runs = store.frame().sort_values(["wall_time_s", "key"])
    cheap = runs.head(max(SAMPLE, int(len(runs) * CHEAPEST)))
    cheap = cheap[cheap["wall_time_s"] <= MAX_WALL_S]
    keys = sorted(cheap["key"])
    return random.Random(0).sample(keys, min(SAMPLE, len(keys)))


@pytest.mark.parametrize("key", cheapest_committed_records() or
                         [pytest.param(None, marks=pytest.mark.skip(reason="no committed run records in data/runs/"))])
def test_committed_record_is_reproduced_by_the_code(key):
    """Committed data must stay reproducible: re-run a (seeded) random sample of the cheapest
    records with their own thread count and compare every final metric."""
    stored = RunStore(REPO_DATA).get(key)
    again = fit(RunConfig.from_dict(stored.config), threads=stored.provenance["threads"])
    assert again.key == key
    assert again.metrics["epochs_run"] == stored.metrics["epochs_run"]
    for name, value in stored.metrics.items():
        assert again.metrics[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_grade_counts_checks_including_numpy_booleans():
    import numpy as np
    assert status.grade([np.True_, np.True_]) == "reproduced"  # np.True_ + np.True_ would be True, not 2
    assert status.grade([True, np.False_]) == "partial"
    assert status.grade([np.False_, False]) == "not reproduced"
    assert status.grade([]) == "not reproduced"
    assert status.grade(np.array([1.0, 2.0]) < 1.5) == "partial"


def test_every_committed_record_loads_under_its_key():
    """A change to a config class (a new field, a renamed label) must leave every committed run
    where it is: each record of data/runs/ parses, and the hash of its config is its file name."""
    paths = sorted((REPO_DATA / "runs").glob("*.json"))
    if not paths:
        pytest.skip("no committed run records in data/runs/")
    moved = []
    for path in paths:
        record = json.loads(path.read_text(encoding="utf-8"))
        if RunConfig.from_dict(record["config"]).key != path.stem:
            moved.append(path.name)
    assert moved == [], f"{len(moved)} of {len(paths)} records no longer hash to their file name: {moved[:5]}"
