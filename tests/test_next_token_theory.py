"""The next-token theory's probes (symlib.probes): the exact one-step law of unseen rows, update
spaces and projections, copying by construction."""

import pytest
import torch

import symlib as S
from symlib import probes as P

COPY = S.DataConfig(n=16, n_test=40, test_alphabet=40, n_val=8, val_alphabet=8)
TINY = S.ModelConfig(dim=32, depth=1, heads=1, dim_head=16, mlp_dim=32)


@pytest.fixture()
def setup():
    task = S.get_task("copy")
    data = S.make_data(task, COPY, seed=0)
    return data, S.build_model(TINY, data.vocab_size, task.length, task.kind, seed=0)


def test_final_hidden_is_what_the_tied_unembedding_reads(setup):
    data, model = setup
    with torch.no_grad():
        h = P.final_hidden(model, data.x["test"])
        assert torch.allclose(h @ model.tok_emb.weight.T, model(data.x["test"]), atol=1e-4)


@pytest.mark.parametrize("init_scale", [1.0, 0.1])
def test_unseen_rows_move_along_training_hidden_states(init_scale):
    task = S.get_task("copy")
    data = S.make_data(task, COPY, seed=0)
    from dataclasses import replace
    model = S.build_model(replace(TINY, init_scale=init_scale), data.vocab_size, task.length, task.kind, seed=0)
    out = P.unseen_row_step(model, data, lr=0.1)
    assert out["rel_change"] > 0 and out["max_rel_error"] < 1e-9


def test_update_space_recovers_a_known_update(setup):
    data, model = setup
    trained = S.build_model(TINY, data.vocab_size, 3 + 1, "next_token", seed=0)
    trained.load_state_dict(model.state_dict())
    v = torch.randn(32)
    with torch.no_grad():
        trained.blocks[0].attn.w_v.weight += torch.outer(torch.randn(16), v)  # rank one, row space v
    basis = P.update_space(model, trained, "reads")
    assert basis.shape == (32, 1)
    w = torch.randn(32)
    w -= (w @ v) / (v @ v) * v
    frac = P.projection_fraction(torch.stack([v, w]), basis)
    assert frac[0] == pytest.approx(1.0, abs=1e-5) and frac[1] == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="did not change"):
        P.update_space(model, trained, "embedding")
    with pytest.raises(ValueError, match="part must be"):
        P.update_space(model, trained, "heads")


def test_isotropic_vectors_project_m_over_d():
    d, m = 200, 20
    basis, _ = torch.linalg.qr(torch.randn(d, m, generator=torch.Generator().manual_seed(0)))
    e = torch.randn(4000, d, generator=torch.Generator().manual_seed(1))
    assert float(P.projection_fraction(e, basis).mean()) == pytest.approx(m / d, rel=0.05)


def test_vo_path_copies_unseen_tokens_and_plain_init_does_not():
    assert P.vo_copy_error(128, b=10.0, n_test=200, test_alphabet=200) < 0.1
    assert P.vo_copy_error(128, b=0.0, n_test=200, test_alphabet=200) > 0.9


def test_span_copier_fails_as_d_grows_at_fixed_n():
    assert P.span_copy_error(64, 64, vocab=300, n_test=200) < 0.05   # n >= d: the span is everything
    assert P.span_copy_error(512, 8, vocab=300, n_test=200) > 0.9


def test_probes_need_a_next_token_model():
    mlp = S.build_model(S.ModelConfig(kind="mlp", hidden=8), 20, 2, "regression", seed=0)
    with pytest.raises(ValueError, match="NextTokenTransformer"):
        P.final_hidden(mlp, torch.zeros(1, 2, dtype=torch.long))
