"""symlib.gpt, symlib.lm and symlib.heads on tiny models and token streams made here (no network)."""

import json
import math

import pytest
import torch

from symlib.gpt import VARIANTS, GPTConfig, build_gpt, load_pretrained
from symlib.lm import (LMData, LMTrainConfig, checkpoint_path, eval_blocks, evaluate, fit_lm,
                       get_lm_run, lm_frame, load_weights, record_path, sample_blocks, save_weights,
                       weights_path)
from symlib.store import RunStore

TINY = GPTConfig(vocab_size=48, context=16, dim=32, depth=2, heads=2, dim_head=16)


def tiny_data(n: int = 4000, seed: int = 0) -> LMData:
    """A learnable stream: a repeated random phrase with noise."""
    g = torch.Generator().manual_seed(seed)
    phrase = torch.randint(1, 48, (37,), generator=g)
    stream = phrase.repeat(n // 37 + 1)[:n].clone()
    noise = torch.rand(n, generator=g) < 0.1
    stream[noise] = torch.randint(1, 48, (int(noise.sum()),), generator=g)
    stream = stream.to(torch.int32)
    return LMData(stream[:3000], stream[3000:3500], stream[3500:], {"name": "tiny", "vocab_size": 48})


def _set_identities(model, a: float, b: float):
    with torch.no_grad():
        for blk in model.blocks:
            if blk.attn.a_h is not None:
                blk.attn.a_h.fill_(a)
            if blk.attn.b_h is not None:
                blk.attn.b_h.fill_(b)


# ----------------------------------------------------------------------------- the model


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_attention_is_causal(variant):
    model = build_gpt(TINY.with_variant(variant), seed=0)
    _set_identities(model, 0.7, -0.4)  # the identity terms must respect the mask too
    x = torch.randint(0, 48, (2, 16))
    y = x.clone()
    y[:, 9:] = (y[:, 9:] + 1) % 48  # change the future of position 8
    lx, ly = model(x), model(y)
    assert lx.shape == (2, 16, 48)
    assert torch.allclose(lx[:, :9], ly[:, :9], atol=1e-6)
    assert not torch.allclose(lx[:, 9:], ly[:, 9:])


def test_kq_identity_term_has_its_diagonal_masked():
    """With W_Q = W_K = 0 the attention of head h is softmax(a_h · X Xᵀ) with X Xᵀ's diagonal zeroed
    and the causal mask after it: no bonus for attending to oneself.  With W_V = W_O = I the output's
    columns of head h are A_h X[:, cols of h], so A_h can be read off the output."""
    attn = build_gpt(TINY.with_variant("kq"), seed=0).blocks[0].attn
    with torch.no_grad():
        for lin in (attn.w_q, attn.w_k, attn.w_v, attn.w_o):
            lin.weight.zero_(), lin.bias.zero_()
        attn.w_v.weight.copy_(torch.eye(32)), attn.w_o.weight.copy_(torch.eye(32))
        attn.a_h.copy_(torch.tensor([2.0, -1.0]))
    x = torch.randn(1, 6, 32)
    x[0, 3] = x[0, 1]  # position 3 repeats position 1: a large X Xᵀ entry off the diagonal
    with torch.no_grad():
        out = attn(x)                                                           # (1, 6, 32)
    xx = (x @ x.transpose(-1, -2))[0].fill_diagonal_(0.0)
    causal = torch.ones(6, 6, dtype=torch.bool).triu(1)
    for h, a in enumerate((2.0, -1.0)):
        want = torch.softmax((a * xx).masked_fill(causal, float("-inf")), dim=-1)  # (6, 6)
        cols = slice(16 * h, 16 * (h + 1))
        assert torch.allclose(out[0, :, cols], want @ x[0, :, cols], atol=1e-5)
        if h == 0:  # a_h > 0: position 3 attends to its repeat at 1, and gets no bonus for itself
            assert want[3].argmax() == 1 and want[3, 3] < want[3, 1]
    unmasked = torch.softmax((2.0 * (x @ x.transpose(-1, -2))[0]).masked_fill(causal, float("-inf")), -1)
    assert not torch.allclose(out[0, :, :16], unmasked @ x[0, :, :16], atol=1e-3)  # the mask matters


def test_modified_models_equal_the_baseline_of_the_same_seed():
    base = build_gpt(TINY, seed=3)
    x = torch.randint(0, 48, (2, 16))
    for variant in ("kq", "vo", "kq_vo"):
        mod = build_gpt(TINY.with_variant(variant), seed=3)
        sb, sm = base.state_dict(), mod.state_dict()
        assert set(sm) - set(sb) == {k for k in sm if k.endswith(("a_h", "b_h"))} != set()
        assert all(torch.equal(sb[k], sm[k]) for k in sb)  # same init order, same draws
        assert all(float(sm[k].abs().sum()) == 0 for k in set(sm) - set(sb))
        assert torch.equal(base(x), mod(x))  # exactly the same function
    assert not torch.equal(build_gpt(TINY, seed=4)(x), base(x))


def test_config_and_input_errors():
    for bad in ({"dim": 0}, {"heads": 2.5}, {"dropout": 1.0}, {"gelu": "relu"}, {"kq_identity": "yes"}):
        with pytest.raises(ValueError):
            GPTConfig(**bad)
    with pytest.raises(ValueError, match="unknown variant"):
        TINY.with_variant("qk")
    with pytest.raises(ValueError, match="longer than the context"):
        build_gpt(TINY, 0)(torch.zeros(1, 17, dtype=torch.long))
    for bad in ({"steps": 0}, {"lr": -1.0}, {"grad_clip": 0.0}, {"precision": "fp16"}, {"batch_size": True}):
        with pytest.raises(ValueError):
            LMTrainConfig(**bad)
    assert GPTConfig().variant == "baseline" and GPTConfig(kq_identity=True, vo_identity=True).variant == "kq_vo"
    d = GPTConfig()
    assert (d.dim, d.depth, d.heads, d.dim_head, d.context, d.dropout) == (256, 4, 4, 64, 256, 0.0)


# ----------------------------------------------------------------------------- the training loop


def test_batches_and_evaluation():
    data = tiny_data()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x1, y1 = sample_blocks(data.train, 4, 16, g1)
    x2, _ = sample_blocks(data.train, 4, 16, g2)
    assert torch.equal(x1, x2) and x1.shape == y1.shape == (4, 16) and torch.equal(x1[:, 1:], y1[:, :-1])
    blocks = eval_blocks(data.val, 16)
    assert blocks.shape == ((500 - 1) // 16, 17) and torch.equal(blocks[1, 0], blocks[0, 16])
    assert eval_blocks(data.val, 16, 5).shape == (5, 17)
    m = evaluate(build_gpt(TINY, 0), blocks, "val")
    assert m["val_ppl"] == pytest.approx(math.exp(m["val_loss"]))
    assert abs(m["val_loss"] - math.log(48)) < 0.2 and 0 <= m["val_acc"] <= 1  # near uniform at init


def test_training_learns_and_records_a_and_b(tmp_path):
    store = RunStore(tmp_path)
    train = LMTrainConfig(steps=60, batch_size=8, lr=3e-3, eval_every=20, eval_blocks=8)
    r = fit_lm(TINY.with_variant("kq_vo"), train, tiny_data(), seed=0, store=store)
    assert [row["step"] for row in r.curve] == [20, 40, 60]
    assert r.curve[-1]["tokens"] == 60 * 8 * 16
    assert r.metrics["val_loss"] < math.log(48) - 1.0 and r.metrics["val_acc"] > 0.3  # it learned the phrase
    assert r.metrics["test_ppl"] == pytest.approx(math.exp(r.metrics["test_loss"]))
    assert len(r.curve[0]["a_h"]) == 2 and len(r.curve[0]["a_h"][0]) == 2  # layers × heads
    assert r.metrics["b_h"] != [[0.0, 0.0], [0.0, 0.0]]  # the coefficients moved
    assert r.provenance["threads"] == 1 and r.key.startswith("lm-")
    # the record, the weights, no checkpoint left
    assert json.loads(record_path(store, r.key).read_text())["metrics"] == r.metrics
    assert get_lm_run(store, r.key).curve == r.curve
    assert weights_path(store, r.key).exists() and not checkpoint_path(store, r.key).exists()
    assert not (tmp_path / "runs").exists()  # the template-task store is untouched
    again = fit_lm(TINY.with_variant("kq_vo"), train, tiny_data(), seed=0, store=store)
    assert again.wall_time_s == r.wall_time_s  # read back, not retrained
    frame = lm_frame(store)
    assert frame[["variant", "seed"]].values.tolist() == [["kq_vo", 0]] and "val_loss" in frame
    record_path(store, r.key).write_text("{")
    with pytest.raises(ValueError, match="corrupt LM run record"):
        get_lm_run(store, r.key)


def test_resume_after_interrupt_ends_in_the_identical_state(tmp_path):
    cfg, data = TINY.with_variant("kq_vo"), tiny_data()
    train = LMTrainConfig(steps=12, batch_size=4, eval_every=5, eval_blocks=4)
    straight, m1 = fit_lm(cfg, train, data, seed=1, return_model=True)
    store = RunStore(tmp_path)
    assert fit_lm(cfg, train, data, seed=1, store=store, stop_at_step=7) is None  # "killed" at step 7
    assert checkpoint_path(store, straight.key).exists() and not record_path(store, straight.key).exists()
    resumed, m2 = fit_lm(cfg, train, data, seed=1, store=store, return_model=True)
    assert resumed.key == straight.key
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)  # bit for bit
    strip = lambda curve: [{k: v for k, v in row.items() if k != "wall_s"} for row in curve]  # noqa: E731
    assert strip(resumed.curve) == strip(straight.curve)
    assert resumed.metrics == straight.metrics
    assert not checkpoint_path(store, straight.key).exists()


def test_paired_runs_see_the_same_batches_and_start_identical():
    data = tiny_data()
    train = LMTrainConfig(steps=1, batch_size=4, eval_every=1, eval_blocks=2, lr=1e-12)
    a = fit_lm(TINY, train, data, seed=2)
    b = fit_lm(TINY.with_variant("kq_vo"), train, data, seed=2)
    assert a.curve[0]["train_loss"] == b.curve[0]["train_loss"]  # same init, same first batch
    assert a.key != b.key


def test_bf16_autocast_trains(tmp_path):
    train = LMTrainConfig(steps=30, batch_size=8, lr=3e-3, eval_every=30, eval_blocks=8, precision="bf16")
    r = fit_lm(TINY, train, tiny_data(), seed=0)
    assert math.isfinite(r.metrics["val_loss"]) and r.metrics["val_loss"] < math.log(48) - 0.5


def test_fit_lm_refuses_mismatched_data():
    with pytest.raises(ValueError, match="vocabulary"):
        fit_lm(GPTConfig(vocab_size=64, context=16, dim=32, depth=1, heads=2, dim_head=16),
               LMTrainConfig(steps=1), tiny_data())
    with pytest.raises(ValueError, match="1-D integer"):
        LMData(torch.zeros(10), torch.zeros(10, dtype=torch.long), torch.zeros(10, dtype=torch.long), {})


def test_weights_round_trip_in_bf16(tmp_path):
    model = build_gpt(TINY.with_variant("kq"), seed=0)
    _set_identities(model, 0.25, 0.0)
    back = load_weights(save_weights(model, tmp_path / "m.safetensors"))
    assert back.cfg == model.cfg
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v.to(torch.bfloat16).float())
    assert (tmp_path / "m.safetensors").stat().st_size < 2 * sum(p.numel() for p in model.parameters()) + 4096
    with pytest.raises(ValueError, match="no weights file"):
        load_weights(tmp_path / "missing.safetensors")


# ----------------------------------------------------------------------------- GPT-2 weights


def test_load_pretrained_hf_gpt2_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed: the hf: loader is untested")
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=12, n_embd=24, n_layer=2, n_head=3,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # every weight and bias random, not GPT-2's zero-bias initialisation
        for p in hf.parameters():
            p.normal_(0.0, 0.3)
    hf.save_pretrained(tmp_path / "tiny-gpt2")
    x = torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        want = hf(x).logits
        ours = load_pretrained(f"hf:{tmp_path / 'tiny-gpt2'}")
        assert torch.allclose(ours(x), want, atol=1e-5, rtol=0)
        both = load_pretrained(f"hf:{tmp_path / 'tiny-gpt2'}", kq_identity=True, vo_identity=True)
        assert torch.allclose(both(x), want, atol=1e-5, rtol=0)  # a_h = b_h = 0: the same function
    assert ours.cfg.dim_head == 8 and ours.cfg.gelu == "tanh"
    with pytest.raises(ValueError, match="cannot load"):
        load_pretrained(f"hf:{tmp_path / 'nothing-here'}")


def test_load_pretrained_refuses_unknown_specs():
    for bad in ("gpt2", "hf:", None):
        with pytest.raises(ValueError, match="unknown pretrained model"):
            load_pretrained(bad)


# ----------------------------------------------------------------------------- identity-like heads


def test_head_statistic_finds_a_planted_diagonal():
    from symlib.heads import diagonal_z, identity_likeness, null_z
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(64, 64, generator=g)
    assert abs(diagonal_z(noise)) < 4
    planted = identity_likeness(noise + 1.0 * torch.eye(64), samples=100)
    assert planted["z"] > 6 and planted["p"] == pytest.approx(1 / 101)
    a = torch.randn(64, 8, generator=g)  # low rank: A Aᵀ has a positive diagonal, A Bᵀ none
    assert identity_likeness(a @ a.T, rank=8, samples=100)["z"] > 6
    null = null_z(64, 8, samples=100)
    assert abs(float(null.mean())) < 0.5 and 0.5 < float(null.std()) < 1.5
    small = 0.01 * noise[:5, :5]
    assert diagonal_z(torch.eye(5) + small) > 10 and diagonal_z(-torch.eye(5) + small) < -10
    assert math.isnan(diagonal_z(torch.eye(5)))  # constant off-diagonal: no scale to measure by
    with pytest.raises(ValueError, match="square"):
        diagonal_z(torch.zeros(3, 4))


def test_head_table_covers_every_head():
    from symlib.attention import Attention
    from symlib.heads import head_table
    if not hasattr(Attention, "qk"):
        pytest.skip("symlib.attention has no per-head views qk(h), ov(h) yet")
    model = build_gpt(TINY.with_variant("kq_vo"), seed=0)
    _set_identities(model, 5.0, 0.0)  # a_h I dominates qk: identity-like; ov is not
    rows = head_table(model, samples=50)
    assert len(rows) == 2 * 2 * 2
    qk = [r["z"] for r in rows if r["matrix"] == "qk"]
    ov = [r["z"] for r in rows if r["matrix"] == "ov"]
    assert min(qk) > 6 and max(abs(z) for z in ov) < 4


def test_progress_bar_goes_to_stderr_and_changes_nothing(capsys):
    cfg, data = TINY.with_variant("kq_vo"), tiny_data()
    train = LMTrainConfig(steps=6, batch_size=4, eval_every=3, eval_blocks=4)
    quiet = fit_lm(cfg, train, data, seed=2)
    assert capsys.readouterr().err == ""
    shown = fit_lm(cfg, train, data, seed=2, progress=True)
    out = capsys.readouterr()
    assert "kq_vo seed 2" in out.err and "6/6" in out.err and out.out == ""
    assert shown.metrics == quiet.metrics
