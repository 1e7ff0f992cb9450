"""Architectures and their switches (symlib.models, symlib.attention)."""

import pytest
import torch

from symlib import ModelConfig, build_model
from symlib.attention import Attention, attention_patterns
from symlib.models import identity_parameters

V, K = 50, 3


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("depth, heads", [(1, 1), (2, 4), (3, 2)])
def test_switches_add_two_scalars_per_head_and_block(depth, heads):
    base = ModelConfig(depth=depth, heads=heads, dim=32, dim_head=8)
    plain = build_model(base, V, K, "regression", seed=0)
    both = build_model(ModelConfig(**{**base.to_dict(), "kq_identity": True, "vo_identity": True}), V, K,
                       "regression", seed=0)
    assert n_params(both) - n_params(plain) == 2 * heads * depth
    assert len(identity_parameters(both)) == 2 * depth
    assert all(float(p.detach().abs().sum()) == 0 for p in identity_parameters(both).values())  # init 0


@pytest.mark.parametrize("label_kind", ["regression", "next_token"])
def test_zero_identities_compute_the_plain_function(label_kind):
    x = torch.randint(0, V, (16, K))
    plain = build_model(ModelConfig(dim=32), V, K, label_kind, seed=1)
    mod = build_model(ModelConfig(dim=32, kq_identity=True, vo_identity=True), V, K, label_kind, seed=1)
    assert torch.equal(plain(x), mod(x))
    with torch.no_grad():  # and the switches do act once the scalars move
        for p in identity_parameters(mod).values():
            p.fill_(0.5)
    assert not torch.allclose(plain(x), mod(x))


def test_kq_identity_adds_a_h_xxt_to_the_logits():
    att = Attention(dim=8, heads=2, dim_head=4, kq_identity=True)
    with torch.no_grad():
        for w in (att.w_q, att.w_k):
            w.weight.zero_()
        att.a_h.copy_(torch.tensor([1.0, 0.0]))
    x = torch.randn(1, 5, 8)
    with attention_patterns(att) as patterns:
        att(x)
    a = patterns[""][0]
    assert torch.allclose(a[0], torch.softmax(x[0] @ x[0].T, -1), atol=1e-6)  # head 0: a_h = 1
    assert torch.allclose(a[1], torch.full((5, 5), 0.2))                       # head 1: uniform


def test_vo_identity_adds_attended_inputs():
    att = Attention(dim=8, heads=2, dim_head=4, vo_identity=True)
    with torch.no_grad():
        att.w_o.weight.zero_()
        att.b_h.copy_(torch.tensor([2.0, 1.0]))
    x = torch.randn(3, 4, 8)
    with attention_patterns(att) as patterns:
        out = att(x)
    a = patterns[""]
    assert torch.allclose(out, 2 * a[:, 0] @ x + a[:, 1] @ x, atol=1e-5)


def test_causal_variant_masks_future_and_self_similarity():
    att = Attention(dim=8, heads=1, dim_head=4, kq_identity=True, causal=True)
    with torch.no_grad():
        att.a_h.fill_(100.0)
    with attention_patterns(att) as patterns:
        att(torch.randn(2, 4, 8))
    a = patterns[""]
    assert torch.all(a.triu(1) == 0)
    assert torch.allclose(a[..., 0, 0], torch.ones(2, 1))


LOGIT_SCALE = 3.0


def _reference_forward(att, x):
    """The forward as it was written before the hooks and per-head views (a fixed reference)."""
    import math
    b, n, _ = x.shape
    split = lambda t: t.view(b, n, att.heads, att.dim_head).transpose(1, 2)  # noqa: E731
    q, k, v = split(att.w_q(x)), split(att.w_k(x)), split(att.w_v(x))
    logits = (q @ k.transpose(-1, -2)) * (LOGIT_SCALE / math.sqrt(att.dim_head))
    if att.a_h is not None:
        xx = x @ x.transpose(-1, -2)
        if att.causal:
            xx = xx.masked_fill(torch.eye(n, dtype=torch.bool), 0.0)
        logits = logits + (att.identity_scale * att.a_h).view(1, -1, 1, 1) * xx.unsqueeze(1)
    if att.causal:
        logits = logits.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    attn = torch.softmax(logits, dim=-1)
    out = att.w_o((attn @ v).transpose(1, 2).reshape(b, n, -1))
    if att.b_h is not None:
        out = out + torch.einsum("h,bhij->bij", att.identity_scale * att.b_h, attn) @ x
    return out, attn


def _random_attention(causal, kq=True, vo=True, heads=3, seed=0):
    torch.manual_seed(seed)
    att = Attention(dim=8, heads=heads, dim_head=4, kq_identity=kq, vo_identity=vo, logit_scale=LOGIT_SCALE,
                    identity_scale=3.0, causal=causal)
    with torch.no_grad():
        for p in (att.a_h, att.b_h):
            if p is not None:
                p.normal_()
    return att


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kq, vo", [(False, False), (True, False), (False, True), (True, True)])
def test_forward_and_pattern_hook_are_the_reference_computation(causal, kq, vo):
    att = _random_attention(causal, kq, vo)
    x = torch.randn(5, 6, 8)
    want_out, want_attn = _reference_forward(att, x)
    with attention_patterns(att) as patterns:
        out = att(x)
    assert torch.equal(out, want_out) and torch.equal(patterns[""], want_attn)
    assert torch.equal(att(x), want_out)  # and without the hook


def test_attention_switches_are_keyword_only():
    with pytest.raises(TypeError):
        Attention(8, 2, 4, True)
    a = Attention(8, 2, 4, kq_identity=True, vo_identity=True, logit_scale=2.0, identity_scale=3.0, causal=True)
    assert (a.heads, a.dim_head, a.identity_scale, a.causal) == (2, 4, 3.0, True)
    assert a.a_h is not None and a.b_h is not None and a.scale == 2.0 / 2


@pytest.mark.parametrize("kq", [False, True])
def test_qk_reproduces_each_heads_logits(kq):
    att = _random_attention(causal=False, kq=kq, vo=False)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    att = att.double()
    with torch.no_grad(), attention_patterns(att) as patterns:
        att(x)
        for h in range(att.heads):
            assert att.qk(h).shape == (8, 8)
            assert att.W_Q(h).shape == att.W_K(h).shape == att.W_V(h).shape == (8, 4)
            assert att.W_O(h).shape == (4, 8)
            logits = x @ att.qk(h) @ x.transpose(-1, -2)
            assert torch.allclose(torch.softmax(logits, -1), patterns[""][:, h], atol=1e-12)


def test_qk_reproduces_causal_logits_off_the_diagonal():
    att = _random_attention(causal=True, kq=True, vo=False).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    with torch.no_grad(), attention_patterns(att) as patterns:
        att(x)
        for h in range(att.heads):
            logits = x @ att.qk(h) @ x.transpose(-1, -2)
            diag = torch.diagonal(x @ x.transpose(-1, -2), dim1=-2, dim2=-1)
            logits = logits - torch.diag_embed(att.identity_scale * att.a_h[h] * diag)  # self-similarity masked
            logits = logits.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
            assert torch.allclose(torch.softmax(logits, -1), patterns[""][:, h], atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("vo", [False, True])
def test_ov_reproduces_each_heads_output(causal, vo):
    att = _random_attention(causal=causal, kq=True, vo=vo).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    with torch.no_grad(), attention_patterns(att) as patterns:
        out = att(x)
        a = patterns[""]
        parts = [a[:, h] @ x @ att.ov(h) for h in range(att.heads)]
    assert torch.allclose(out, sum(parts), atol=1e-12)


def test_per_head_views_refuse_a_head_that_does_not_exist():
    att = Attention(8, 2, 4)
    for h in (-1, 2, 1.0, True):
        with pytest.raises(ValueError, match=r"head must be an integer in 0\.\.1"):
            att.qk(h)


@pytest.mark.parametrize("label_kind", ["regression", "next_token"])
def test_attention_patterns_of_a_model_are_collected_by_hooks_and_removed(label_kind):
    model = build_model(ModelConfig(dim=16, heads=2, dim_head=8, kq_identity=True), V, K, label_kind, seed=0)
    x = torch.randint(0, V, (4, K))
    before = model(x)
    with attention_patterns(model) as patterns:
        assert torch.equal(model(x), before)
    T = K + 1 if label_kind == "regression" else K  # + the CLS slot
    assert set(patterns) == {"blocks.0.attn", "blocks.1.attn"}
    assert all(a.shape == (4, 2, T, T) and not a.requires_grad for a in patterns.values())
    assert all(not m._forward_hooks for m in model.modules())


def test_mimetic_init_makes_wq_wk_close_to_alpha_z_plus_beta_i():
    m = build_model(ModelConfig(dim=32, heads=2, dim_head=32, mimetic=(0.0, 1.0)), V, K, "regression", seed=0)
    att = m.blocks[0].attn
    for h in range(2):
        wq, wk = att.w_q.weight[h * 32:(h + 1) * 32], att.w_k.weight[h * 32:(h + 1) * 32]
        assert torch.allclose(wq.T @ wk, torch.eye(32), atol=1e-4)


def test_last_layer_only_and_init_scale():
    m = build_model(ModelConfig(dim=16, train_last_layer_only=True), V, K, "regression", seed=0)
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable == ["head.weight", "head.bias"]
    a = build_model(ModelConfig(dim=16), V, K, "regression", seed=0)
    b = build_model(ModelConfig(dim=16, init_scale=3.0), V, K, "regression", seed=0)
    assert torch.allclose(b.tok_emb.weight, 3 * a.tok_emb.weight)
    assert torch.equal(b.blocks[0].ln1.weight, a.blocks[0].ln1.weight)


@pytest.mark.parametrize("kind", ["mlp", "mlp_xxt", "rnn", "lstm", "transformer"])
@pytest.mark.parametrize("label_kind, shape", [("regression", (7,)), ("classification", (7, 3)),
                                               ("next_token", (7, V))])
def test_output_shapes(kind, label_kind, shape):
    m = build_model(ModelConfig(kind=kind, dim=16, hidden=16), V, K, label_kind, n_classes=3, seed=0)
    assert m(torch.randint(0, V, (7, K))).shape == shape


def test_next_token_transformer_ties_embedding():
    m = build_model(ModelConfig(dim=16), V, K, "next_token", seed=0)
    assert m.readout() is m.tok_emb


def test_mlp_xxt_sees_equality_pattern():
    m = build_model(ModelConfig(kind="mlp_xxt", hidden=8), V, 2, "regression", seed=0)
    with torch.no_grad():
        m.first.weight.zero_()  # only the equality features remain
    same, diff = m(torch.tensor([[40, 40]])), m(torch.tensor([[41, 42]]))
    assert not torch.allclose(same, diff)
    assert torch.allclose(m(torch.tensor([[45, 45]])), same)


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "cnn"}, "unknown model kind 'cnn'; allowed: transformer"),
    ({"dim": 0}, "dim must be a positive integer"),
    ({"heads": -1}, "heads must be a positive integer"),
    ({"init_scale": 0}, "init_scale must be a finite positive number"),
    ({"kind": "mlp", "kq_identity": True}, "transformer only"),
    ({"mimetic": (1.0,)}, "pair"),
])
def test_bad_model_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_feature_spread_grows_with_the_init_scale():
    """At the default scale a random transformer's CLS features hardly depend on the input; a
    larger initialisation scale makes them depend more (the kernel chapter's finite-width echo)."""
    from symlib import get_task, make_data
    from symlib.models import feature_spread
    d = make_data(get_task("aba_abb"), 64, seed=0)
    out = [feature_spread(build_model(ModelConfig(dim=32, heads=2, dim_head=16, mlp_dim=32, init_scale=s),
                                      d.vocab_size, 3, "regression", seed=0), d.x["test"], d.y["test"])
           for s in (1.0, 2.0, 4.0)]
    spreads = [o["spread"] for o in out]
    assert 0 < spreads[0] < spreads[1] < spreads[2] < 1
    assert out[0]["label_gap"] < out[2]["label_gap"]
    const = build_model(ModelConfig(dim=32, heads=2, dim_head=16, mlp_dim=32), d.vocab_size, 3, "regression", seed=0)
    with torch.no_grad():
        const.tok_emb.weight.zero_()  # every string looks the same
    assert feature_spread(const, d.x["test"], d.y["test"])["spread"] < 1e-10
    with pytest.raises(ValueError, match="both \\+1 and -1"):
        feature_spread(const, d.x["test"][:2], torch.ones(2))


@pytest.mark.parametrize("task_name", ["aba_abb", "copy", "majority"])
def test_model_for_builds_what_build_model_builds_from_the_unpacked_data(task_name):
    from symlib import DataConfig, build_model, make_data, model_for
    from symlib.tasks import from_spec
    task = from_spec({"name": "majority", "k": 3} if task_name == "majority" else {"name": task_name})
    data = make_data(task, DataConfig(n=16, n_val=8, val_alphabet=8, n_test=8, test_alphabet=8), seed=0)
    cfg = ModelConfig(dim=16, heads=2, dim_head=8)
    a = model_for(cfg, data, seed=3)
    b = build_model(cfg, data.vocab_size, task.length, task.kind, task.n_classes, seed=3)
    assert type(a) is type(b)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    with torch.no_grad():
        assert torch.equal(a(data.x["test"]), b(data.x["test"]))
