"""A byte-level BPE trained on the training split, and the corpus as one tensor of token ids.

Chapters: *Language models* (``language_model``) and *Pretraining* (``pretrained``).

:class:`BPETokenizer` wraps the Hugging Face ``tokenizers`` library: GPT-2's scheme (byte-level
pre-tokenisation, so no text is ever unknown) with a vocabulary of 8192 learned on the training
split only, plus one special token ``<|endoftext|>`` that separates documents.  Training is
deterministic (a test trains twice and compares the JSON), and the tokenizer is one small JSON
file.  :func:`corpus_tokens` encodes a split into a 1-D tensor of ids (documents joined by
``<|endoftext|>``), cached on disk under the corpus folder as ``.npy`` (uint16 while the vocabulary
fits), keyed on the tokenizer's and the split's fingerprints.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import torch

from .corpus import Corpus, corpus_root
from .store import atomic_write_bytes

EOT = "<|endoftext|>"
VOCAB_SIZE = 8192


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ValueError("the BPE tokenizer needs the `tokenizers` package (pinned in requirements.txt); "
                         "run `pip install -r requirements.txt`") from None
    return tokenizers


class BPETokenizer:
    """Byte-level BPE: ``encode(text) -> list[int]``, ``decode(ids) -> str``."""

    def __init__(self, tok):
        self.tok = tok
        self.eot_id = tok.token_to_id(EOT)
        if self.eot_id is None:
            raise ValueError(f"not a symlib tokenizer: it has no {EOT} token")

    @classmethod
    def train(cls, texts: list[str], vocab_size: int = VOCAB_SIZE) -> "BPETokenizer":
        """Learn merges on ``texts`` until the vocabulary (256 bytes, ``<|endoftext|>``, merges)
        holds ``vocab_size`` tokens."""
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 258 <= vocab_size <= 65536:
            raise ValueError(f"vocab_size must be an integer in [258, 65536]; got {vocab_size!r}")
        if not texts:
            raise ValueError("cannot train a tokenizer on no text")
        tk = _tokenizers()
        tok = tk.Tokenizer(tk.models.BPE())
        tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                         special_tokens=[EOT],
                                         initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: str | Path) -> "BPETokenizer":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no tokenizer file {path}")
        try:
            return cls(_tokenizers().Tokenizer.from_str(path.read_text(encoding="utf-8")))
        except Exception as e:
            if isinstance(e, ValueError) and "symlib" in str(e):
                raise
            raise ValueError(f"{path} is not a tokenizer file ({e}); delete it to retrain") from None

    def to_json(self) -> str:
        return self.tok.to_str()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_bytes(path, self.to_json().encode("utf-8"))
        return path

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    @property
    def fingerprint(self) -> str:
        """sha256 of the tokenizer's JSON (what token caches and run configs are keyed on)."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts)]

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)


def corpus_tokenizer(corpus: Corpus, vocab_size: int = VOCAB_SIZE, root: str | Path | None = None,
                     cache: bool = True) -> BPETokenizer:
    """The tokenizer of ``corpus``: trained on its training split, kept as
    ``<root>/tokenizer-<corpus>-<vocab>-<train fingerprint>.json`` and reused from there."""
    path = corpus_root(root) / f"tokenizer-{corpus.name}-{vocab_size}-{corpus.fingerprint('train')[:12]}.json"
    if cache and path.exists():
        return BPETokenizer.load(path)
    tok = BPETokenizer.train(corpus.texts("train"), vocab_size)
    if cache:
        tok.save(path)
    return tok


def encode_documents(tok: BPETokenizer, texts: list[str]) -> torch.Tensor:
    """``(N,)`` int32 ids: each document's tokens followed by ``<|endoftext|>``."""
    ids: list[int] = []
    for doc in tok.encode_batch(texts):
        ids.extend(doc)
        ids.append(tok.eot_id)
    return torch.tensor(ids, dtype=torch.int32)


def corpus_tokens(corpus: Corpus, split: str, tok: BPETokenizer, root: str | Path | None = None,
                  cache: bool = True) -> torch.Tensor:
    """The split as one ``(N,)`` int32 tensor of ids, cached as
    ``<root>/tokens/<corpus>-<split>-<tokenizer>-<split fingerprint>.npy``."""
    name = f"{corpus.name}-{split}-{tok.fingerprint[:12]}-{corpus.fingerprint(split)[:12]}.npy"
    path = corpus_root(root) / "tokens" / name
    if cache and path.exists():
        return torch.from_numpy(np.load(path).astype(np.int32))
    ids = encode_documents(tok, corpus.texts(split))
    if cache:
        dtype = np.uint16 if tok.vocab_size <= 65536 else np.int32
        arr = ids.numpy().astype(dtype)
        with tempfile.TemporaryFile() as f:
            np.save(f, arr)
            f.seek(0)
            atomic_write_bytes(path, f.read())
    return ids
