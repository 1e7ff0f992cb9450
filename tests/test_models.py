"""Architectures and their switches (symlib.models, symlib.attention)."""

import pytest
import torch

from symlib import ModelConfig, build_model
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
    from symlib.attention import Attention
    att = Attention(dim=8, heads=2, dim_head=4, kq_identity=True)
    with torch.no_grad():
        for w in (att.w_q, att.w_k):
            w.weight.zero_()
        att.a_h.copy_(torch.tensor([1.0, 0.0]))
    x = torch.randn(1, 5, 8)
    att(x, record=True)
    a = att.last_attention[0]
    assert torch.allclose(a[0], torch.softmax(x[0] @ x[0].T, -1), atol=1e-6)  # head 0: a_h = 1
    assert torch.allclose(a[1], torch.full((5, 5), 0.2))                       # head 1: uniform


def test_vo_identity_adds_attended_inputs():
    from symlib.attention import Attention
    att = Attention(dim=8, heads=2, dim_head=4, vo_identity=True)
    with torch.no_grad():
        att.w_o.weight.zero_()
        att.b_h.copy_(torch.tensor([2.0, 1.0]))
    x = torch.randn(3, 4, 8)
    out = att(x, record=True)
    a = att.last_attention
    assert torch.allclose(out, 2 * a[:, 0] @ x + a[:, 1] @ x, atol=1e-5)


def test_causal_variant_masks_future_and_self_similarity():
    from symlib.attention import Attention
    att = Attention(dim=8, heads=1, dim_head=4, kq_identity=True, causal=True)
    with torch.no_grad():
        att.a_h.fill_(100.0)
    att(torch.randn(2, 4, 8), record=True)
    a = att.last_attention
    assert torch.all(a.triu(1) == 0)
    assert torch.allclose(a[..., 0, 0], torch.ones(2, 1))


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
