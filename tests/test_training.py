"""Training one run (symlib.training) and the command line (symlib.cli)."""

import json
from dataclasses import replace
import subprocess
import sys

import pytest
import torch

from symlib import DataConfig, ModelConfig, RunConfig, TrainConfig, build_model, fit, get_task, make_data, model_for
from symlib.runs import run_config

FAST = TrainConfig(epochs=30, eval_every=10)


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.1), ("adam", 1e-2)])
def test_mlp_first_layer_never_moves_for_unseen_tokens(optimizer, lr):
    """The MLP-failure mechanism: columns of (position, unseen token) keep their initial values."""
    cfg = ModelConfig(kind="mlp", hidden=32)
    train = TrainConfig(epochs=300, lr=lr, optimizer=optimizer, eval_every=100)
    result, model = fit("aba_abb", cfg, train, data=32, seed=5, return_model=True)
    task = get_task("aba_abb")
    d = make_data(task, 32, seed=5)
    init = model_for(cfg, d, seed=5)
    w0 = init.first.weight.view(task.length, d.vocab_size, -1)
    w1 = model.first.weight.detach().view(task.length, d.vocab_size, -1)
    seen = sorted(d.tokens("train"))
    unseen = sorted(set(range(d.offsets["val"], d.vocab_size)))
    assert torch.equal(w1[:, unseen], w0[:, unseen])            # exactly unchanged
    assert (w1[:, seen] - w0[:, seen]).abs().amax() > 1e-3      # while trained columns move
    assert result.metrics["train_loss"] < 0.05


def test_same_config_and_seed_give_identical_numbers():
    a = fit("aba_abb", ModelConfig(dim=16, heads=2, dim_head=8), FAST, data=16, seed=3)
    b = fit("aba_abb", ModelConfig(dim=16, heads=2, dim_head=8), FAST, data=16, seed=3)
    c = fit("aba_abb", ModelConfig(dim=16, heads=2, dim_head=8), FAST, data=16, seed=4)
    assert a.metrics == b.metrics and a.curve == b.curve and a.key == b.key
    assert a.metrics != c.metrics and a.key != c.key


def test_kq_identity_generalizes_where_the_mlp_cannot():
    """same/different with n = 128: the transformer + KQ identity (identity term x10, as in the
    calibration) falls well below the trivial test loss 1; the MLP stays at it."""
    train = TrainConfig(epochs=400, eval_every=100)
    kq = fit("same_different", ModelConfig(dim=32, kq_identity=True, identity_scale=10.0), train, data=128, seed=0)
    mlp = fit("same_different", ModelConfig(kind="mlp"), train, data=128, seed=0)
    assert kq.metrics["test_loss"] < 0.5
    assert mlp.metrics["train_loss"] < 1e-3
    assert 0.9 < mlp.metrics["test_loss"] < 1.3


def test_result_is_plain_data_with_curve_and_provenance():
    r = fit("same_different", ModelConfig(kind="lstm", dim=8, hidden=8), FAST, data=8, seed=0)
    assert [row["epoch"] for row in r.curve] == [10, 20, 30]
    assert set(r.metrics) >= {"train_loss", "test_loss", "test_error", "best_test_loss", "epochs_run"}
    assert r.provenance["torch"] == torch.__version__ and r.provenance["threads"] == 1
    assert json.loads(json.dumps(r.to_dict()))["key"] == r.key
    assert RunConfig.from_dict(r.config).key == r.key


def test_next_token_training_runs():
    r = fit("copy", ModelConfig(dim=16, vo_identity=True), FAST, data=16, seed=0)
    assert 0 <= r.metrics["test_error"] <= 1 and r.metrics["test_loss"] > 0


def test_early_stopping_rule():
    loose = TrainConfig(epochs=500, eval_every=10, stop_train_loss=10.0, stop_window=20, stop_val_rtol=10.0)
    r = fit("same_different", ModelConfig(kind="mlp", hidden=16), loose, data=8, seed=0)
    assert r.metrics["epochs_run"] == 30  # first evaluation with an evaluation 20 epochs before it
    never = TrainConfig(epochs=40, eval_every=10, stop_train_loss=1e-30)
    assert fit("same_different", ModelConfig(kind="mlp", hidden=16), never, data=8).metrics["epochs_run"] == 40


def test_config_hash_is_stable():
    cfg = run_config("aba_abb", ModelConfig(), TrainConfig(), DataConfig(n=64), seed=0)
    assert cfg.key == run_config("aba_abb", data=64).key
    assert cfg.key == "b96210d40444c3d8"  # changing hashing invalidates every stored record
    assert run_config("aba_abb", ModelConfig(kq_identity=True), data=64).key != cfg.key


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"lr": -1.0}, "lr must be a finite positive number"),
    ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'; allowed: adam, sgd"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
])
def test_bad_train_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "symlib", *args], capture_output=True, text=True, timeout=300)


def test_cli_prints_one_json_line():
    p = cli("train", "--task", "majority", "--param", "k=4", "--model", "transformer", "--kq-identity",
            "--dim", "16", "--n", "16", "--epochs", "5", "--eval-every", "5", "--seed", "1")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["config"]["task"] == {"name": "majority", "k": 4}
    assert rec["config"]["model"]["kq_identity"] is True and rec["config"]["seed"] == 1


@pytest.mark.parametrize("args, message", [
    (["--task", "nope", "--n", "8"], "unknown task 'nope'; allowed"),
    (["--task", "aba_abb", "--n", "1"], "fewer than the task's 2 templates"),
    (["--task", "aba_abb", "--n", "0"], "n must be a positive integer"),
    (["--task", "aba_abb", "--n", "8", "--model", "cnn"], "unknown model kind 'cnn'"),
    (["--task", "aba_abb", "--n", "8", "--model", "mlp", "--kq-identity"], "transformer only"),
    (["--task", "aba_abb", "--n", "8", "--test-alphabet", "1"], "too few for an injective"),
    (["--task", "majority", "--n", "8"], "bad parameters"),
])
def test_cli_bad_input_exits_2_with_a_message(args, message):
    p = cli("train", *args)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("model", [
    ModelConfig(dim=16, heads=2, dim_head=8, mlp_dim=16, train_last_layer_only=True, init_scale=2.0),
    ModelConfig(kind="mlp_xxt", hidden=16, train_last_layer_only=True),
    ModelConfig(kind="lstm", dim=8, hidden=16, train_last_layer_only=True)])
def test_cached_features_give_the_same_run_as_the_frozen_body(model):
    """Last-layer-only training on features computed once is the same optimisation as training
    the whole model with its body frozen — mini-batches included (n > batch size)."""
    train = TrainConfig(epochs=20, eval_every=5, batch_size=64)
    (a, net_a), (b, net_b) = (fit("aba_abb", model, train, 200, seed=1, cache_features=c, return_model=True)
                              for c in (True, False))
    assert [r["train_loss"] for r in a.curve] == pytest.approx([r["train_loss"] for r in b.curve], rel=1e-5)
    assert a.metrics["test_loss"] == pytest.approx(b.metrics["test_loss"], rel=1e-5)
    assert a.curve[0]["train_loss"] > a.curve[-1]["train_loss"]  # the readout did train
    for (name, p), q in zip(net_a.named_parameters(), net_b.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name  # the returned model carries the trained readout


def test_only_a_separate_frozen_body_is_cached():
    from symlib.models import cached_readout
    x = {"train": torch.randint(0, V_TEST, (5, 3))}
    full = build_model(ModelConfig(dim=16, heads=2, dim_head=8), V_TEST, 3, "regression", seed=0)
    assert cached_readout(full, x) is None                       # the body trains too
    tied = build_model(ModelConfig(dim=16, heads=2, dim_head=8, train_last_layer_only=True),
                       V_TEST, 3, "next_token", seed=0)
    assert cached_readout(tied, x) is None                       # readout = embedding, used by the body
    shallow = build_model(ModelConfig(kind="mlp", depth=1, train_last_layer_only=True), V_TEST, 3, "regression", seed=0)
    assert cached_readout(shallow, x) is None                    # no body at all
    head, feats = cached_readout(build_model(ModelConfig(dim=16, heads=2, dim_head=8, train_last_layer_only=True),
                                             V_TEST, 3, "regression", seed=0), x)
    assert feats["train"].shape == (5, 16) and head(feats["train"]).shape == (5,)


V_TEST = 11


def test_precision_benchmark_reports_every_model_and_both_precisions():
    from symlib import bench
    rows = bench.precision(n=32, epochs=1, repeats=1)
    assert [r["model"] for r in rows] == list(bench.precision_models()) == [
        "transformer", "transformer (dim 128, 4 heads)", "MLP", "RNN", "LSTM"]
    for r in rows:
        assert r["float32_samples_per_s"] > 0 and r["bf16_samples_per_s"] > 0
        assert r["speedup"] == pytest.approx(r["bf16_samples_per_s"] / r["float32_samples_per_s"])


def test_evaluation_benchmark_compares_the_sweeps_evaluations_with_one(monkeypatch):
    from symlib import bench
    from symlib.training import TemplateModule
    calls = []
    real = TemplateModule.evaluate
    monkeypatch.setattr(TemplateModule, "evaluate", lambda self, split: calls.append(self.cfg.eval_every) or real(self, split))
    r = bench.evaluation(n=32, epochs=40, repeats=1)
    # warm-up: 1 evaluation; every 20 epochs: 2 of them; only at the end: 1 — each of validation and test
    assert sorted(calls) == [1] * 2 + [20] * 4 + [40] * 2
    assert r["every"] == 20 and r["often_s"] > 0 and r["once_s"] > 0
    assert r["share"] == pytest.approx(1 - r["once_s"] / r["often_s"])
    with pytest.raises(ValueError, match="epochs must be at least 40"):
        bench.evaluation(n=32, epochs=39, repeats=1)


def test_sweep_under_bf16_divides_each_run_by_its_kinds_speedup(tmp_path):
    from symlib import bench
    from symlib.experiments import experiment
    from symlib.runs import RunResult
    from symlib.store import RunStore
    store = RunStore(tmp_path)
    fig2 = experiment("fig2")
    picks = {(c.model.kind, c.model.kq_identity): c for c in fig2 if c.seed == 1 and c.data.n == 16}
    for (kind, kq), c in picks.items():  # 1800 s × 2 threads = 1 CPU-hour per record
        store.put(RunResult(c.key, c.to_dict(), {"epochs_run": 10, "test_loss": 1.0}, [], 1800.0, {"threads": 2}))
    speedups = {"transformer": 2.0, "MLP": 4.0, "RNN": 1.0, "LSTM": 1.0}
    (row,) = bench.sweep_under_bf16(speedups, store)
    kinds = [kind for kind, _ in picks]
    want = sum(1 / {"transformer": 2.0, "mlp": 4.0, "rnn": 1.0, "lstm": 1.0}[k] for k in kinds)
    assert row["seed"] == 1 and row["float32_cpu_h"] == pytest.approx(len(picks))
    assert row["bf16_cpu_h"] == pytest.approx(want) and row["ratio"] == pytest.approx(want / len(picks))


def test_a_run_records_the_commit_of_its_start_not_of_its_end(monkeypatch):
    """A long run that outlives a commit must record the code it trained with."""
    import symlib.training as training
    answers = iter(["commit-at-start", "commit-at-end"])
    monkeypatch.setattr(training, "git_commit", lambda: next(answers))
    r = fit(RESUMABLE.task, RESUMABLE.model, replace(RESUMABLE.train, epochs=2, eval_every=1), DataConfig(n=8), seed=0)
    assert r.provenance["git_commit"] == "commit-at-start"


# ----------------------------------------------------------------------------- resuming a killed run

RESUMABLE = run_config("aba_abb", ModelConfig(dim=16, heads=2, dim_head=8),
                       TrainConfig(epochs=240, eval_every=20, batch_size=8, stop_train_loss=None), DataConfig(n=32), seed=1)


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_numbers(tmp_path):
    """A run SIGKILLed mid-way (a session ending) resumes from its last checkpoint and ends with
    exactly the curve of a run never interrupted; the record says where it resumed, counts the
    earlier session's wall time, and the checkpoint is gone once the run is done."""
    import time
    from symlib.training import checkpoint_state
    ckpt = tmp_path / "run.ckpt"
    script = ("import json; from symlib import RunConfig; from symlib.training import fit; "
              f"fit(RunConfig.from_dict(json.loads({json.dumps(json.dumps(RESUMABLE.to_dict()))})), "
              f"checkpoint={str(ckpt)!r}, checkpoint_every_s=0)")
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline, saved = time.monotonic() + 300, 0
        while saved < 60:  # a checkpoint a quarter of the way in
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            if ckpt.exists():
                saved = torch.load(ckpt, weights_only=False)["epoch"]
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    state = checkpoint_state(ckpt)
    assert state["key"] == RESUMABLE.key and state["thread_s"] == pytest.approx(state["elapsed_s"])
    other = tmp_path / "copy.ckpt"  # the same state resumed with two threads: CPU time still adds up
    other.write_bytes(ckpt.read_bytes())
    start = time.perf_counter()
    two = fit(RESUMABLE, checkpoint=other, threads=2)
    session = time.perf_counter() - start
    assert 1 < two.provenance["threads"] < 2
    assert two.wall_time_s * two.provenance["threads"] == pytest.approx(state["elapsed_s"] + 2 * session, rel=0.02)
    resumed = fit(RESUMABLE, checkpoint=ckpt)
    whole = fit(RESUMABLE)
    assert resumed.curve == whole.curve and resumed.metrics == whole.metrics
    assert resumed.provenance["resumed_at_epochs"][0] >= 60 and "resumed_at_epochs" not in whole.provenance
    assert resumed.provenance["threads"] == 1  # the same count in every session: recorded as it is
    assert not ckpt.exists()


def test_a_checkpoint_of_another_run_or_no_checkpoint_is_refused(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a checkpoint of a symlib run"):
        fit(RESUMABLE, checkpoint=ckpt)
    torch.save({"callbacks": {"Resumable": {"key": "0123abcd", "elapsed_s": 1.0, "resumed_at": []}}}, ckpt)
    with pytest.raises(ValueError, match="belongs to run 0123abcd, not to"):
        fit(RESUMABLE, checkpoint=ckpt)
    assert ckpt.exists(), "a refused checkpoint is left for the user to look at"
    with pytest.raises(ValueError, match="checkpoint_every_s must be"):
        fit(RESUMABLE, checkpoint=ckpt, checkpoint_every_s=-1)
