"""Build the mini-reproduction corpus (issue: a small but honest reproduction on GPU) from local sources.

Usage (from the repository root):

    python data_pipelines/minirepro/build_corpus.py [--out data/minirepro] [--web-chars 40e6] [--code-chars 40e6]

The GPU machines reach no dataset hub, so the corpus is built here from text this machine has and
carried there (about 22 MiB gzipped; data_pipelines/minirepro/recipes/ prepare it into shards). Domains, in the roles of the paper's mixture:

- ``web``: English technical prose, the manual pages of /usr/share/man/man{1,2,3,5,7,8} (but the
  near-identical gcloud pages) converted from roff to plain text, plus the long descriptions
  (READMEs) in the METADATA of installed Python packages;
- ``code``: Python source files of the installed packages (site-packages), cut at top-level
  definitions into documents of at most 16 KB;
- ``math``: exercises with worked solutions from nexus_pretrain.data.embedded_math (seed 1, not the
  embedded corpus's seed);
- ``legal`` (OOD, never trained on): the embedded corpus's licence texts (the mini reproduction's OOD set);
- ``licenses`` (OOD, never trained on; the iso-loss experiment's larger OOD set): licence and copyright
  texts of this machine (/usr/share/common-licenses, /usr/share/doc/*/copyright, LICENSE/COPYING/NOTICE
  files of the installed packages), deduplicated by paragraph; paragraphs that also occur in the web
  domain are dropped so none of it is trained on.

It also writes GSM8k- and MATH500-shaped benchmark files (``benchmarks/gsm8k/test.jsonl``,
``benchmarks/math500/test.jsonl``) from the same generator with a held-out seed, so the evaluation
stage's downstream loss runs on the GPU machine; questions that also occur in the training math are
dropped and counted in the manifest.

Every choice is deterministic (sorted paths, a fixed hash order), so a rebuild on the same machine is
byte-identical; MANIFEST.json records sources, sizes and checksums. The output is not committed
(sources differ between machines and carry their own licences).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import site
import sys
from email.parser import HeaderParser
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))  # lets the script run from a plain checkout

from nexus_pretrain.data.embedded import load_documents  # noqa: E402
from nexus_pretrain.data.embedded_math import TEMPLATES  # noqa: E402
from nexus_pretrain.data.embedded_math.drills import DRILLS  # noqa: E402
from nexus_pretrain.data.embedded_math.numbers import fmt  # noqa: E402
from nexus_pretrain.data.embedded_math.word_problems import WORD_PROBLEMS  # noqa: E402

MAN_ROOT = Path("/usr/share/man")
LICENSE_ROOTS = (Path("/usr/share/common-licenses"), Path("/usr/share/doc"))
LICENSE_NAMES = re.compile(r"^(LICEN[CS]E|COPYING|NOTICE|copyright)([._-].*)?$", re.IGNORECASE)
MAN_SECTIONS = ("man1", "man2", "man3", "man5", "man7", "man8")
# 16.6k of the 17.8k man1 pages are near-identical Google Cloud CLI pages: left out for diversity.
MAN_SKIP_PREFIXES = ("gcloud",)
MAX_DOC_CHARS = 16_000
MIN_DOC_CHARS = 200
MATH_SEED, BENCHMARK_SEED = 1, 7


# ------------------------------------------------------------------------------------------------ web
_ROFF_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes
    (re.compile(r"\\s[+-]?\d+"), ""),  # size changes
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),  # string registers
    (re.compile(r"\\\((em|en)"), "--"),
    (re.compile(r"\\\((aq|cq|oq)"), "'"),
    (re.compile(r"\\\((dq|lq|rq)"), '"'),
    (re.compile(r"\\\(bu"), "*"),
    (re.compile(r"\\\(.."), ""),
    (re.compile(r"\\\[[^\]]*\]"), ""),
    (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\[e\\]"), "\\\\"),
    (re.compile(r"\\[&|^%:)]"), ""),
    (re.compile(r"\\[ ~0]"), " "),
    (re.compile(r"\\c$"), ""),
]
_TEXT_MACROS = {"B", "I", "BR", "RB", "IR", "RI", "BI", "IB", "SM", "SB"}
_HEADING_MACROS = {"SH", "SS"}
_BREAK_MACROS = {"PP", "LP", "P", "TP", "IP", "HP", "sp", "br", "RS", "RE", "Sh", "Pp"}


def _roff_args(rest: str) -> str:
    """A macro's arguments as text (quotes removed, words joined)."""
    return " ".join(a.strip('"') for a in re.findall(r'"[^"]*"|\S+', rest))


def roff_to_text(source: str) -> str:
    """Plain text of a man page: headings, paragraphs and inline font macros kept, other requests dropped."""
    out: List[str] = []
    for line in source.splitlines():
        if line.startswith((".\\\"", "'\\\"", '.\\"')) or line.strip() in (".", "'"):
            continue
        if line.startswith((".", "'")):
            macro, _, rest = line[1:].strip().partition(" ")
            if macro in _HEADING_MACROS:
                out += ["", _roff_args(rest).upper() if macro == "SH" else _roff_args(rest)]
            elif macro in _TEXT_MACROS:
                out.append(_roff_args(rest))
            elif macro in _BREAK_MACROS:
                out.append("")
                if macro == "IP" and rest.strip():
                    out.append(_roff_args(rest).split(" ")[0])
            continue
        out.append(line)
    text = "\n".join(out)
    for pattern, repl in _ROFF_ESCAPES:
        text = pattern.sub(repl, text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def man_documents() -> Iterator[str]:
    """English man pages of the chosen sections (sorted by path), as text."""
    for section in MAN_SECTIONS:
        for path in sorted((MAN_ROOT / section).glob("*.gz")):
            if path.is_symlink() or path.name.startswith(MAN_SKIP_PREFIXES):
                continue
            try:
                raw = gzip.decompress(path.read_bytes()).decode("utf-8")
            except (OSError, UnicodeDecodeError, EOFError):
                continue
            if raw.lstrip().startswith(".so "):  # a redirect to another page
                continue
            yield from split_paragraph_docs(roff_to_text(raw))


def package_readmes(site_packages: Path) -> Iterator[str]:
    """Long descriptions from installed packages' METADATA (sorted by distribution), as text."""
    for meta in sorted(site_packages.glob("*.dist-info/METADATA")):
        message = HeaderParser().parsestr(meta.read_text(encoding="utf-8", errors="replace"))
        body = message.get_payload() or message.get("Description") or ""
        yield from split_paragraph_docs(str(body).strip())


def split_paragraph_docs(text: str) -> Iterator[str]:
    """Cut a text at blank lines into documents of at most MAX_DOC_CHARS (short ones dropped)."""
    doc: List[str] = []
    size = 0
    for para in text.split("\n\n"):
        if size + len(para) > MAX_DOC_CHARS and doc:
            yield "\n\n".join(doc)
            doc, size = [], 0
        doc.append(para)
        size += len(para) + 2
    if doc and size >= MIN_DOC_CHARS:
        yield "\n\n".join(doc)


# ----------------------------------------------------------------------------------------------- code
def python_files(site_packages: Path) -> List[Path]:
    """Installed Python sources in a fixed pseudo-random order (sha256 of the relative path)."""
    files = [p for p in site_packages.rglob("*.py") if p.is_file() and 1_000 <= p.stat().st_size <= 400_000]
    return sorted(files, key=lambda p: hashlib.sha256(str(p.relative_to(site_packages)).encode()).digest())


def split_code_docs(source: str) -> Iterator[str]:
    """Cut a Python file before top-level definitions into documents of at most MAX_DOC_CHARS."""
    doc, size = [], 0
    for block in re.split(r"\n(?=(?:def |class |async def |@))", source):
        if size + len(block) > MAX_DOC_CHARS and doc:
            yield "\n".join(doc)
            doc, size = [], 0
        doc.append(block[:MAX_DOC_CHARS])
        size += len(block) + 1
    if doc and size >= MIN_DOC_CHARS:
        yield "\n".join(doc)


def code_documents(site_packages: Path) -> Iterator[str]:
    for path in python_files(site_packages):
        try:
            yield from split_code_docs(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            continue


# ------------------------------------------------------------------------------------------- licenses
def _paragraph_key(paragraph: str) -> bytes:
    """Paragraphs compare equal up to whitespace and case."""
    return hashlib.sha256(re.sub(r"\s+", " ", paragraph.strip()).lower().encode()).digest()


def paragraph_keys(docs: Iterable[str]) -> set:
    """The keys of every paragraph of ``docs``."""
    return {_paragraph_key(p) for doc in docs for p in doc.split("\n\n") if p.strip()}


def license_files(site_packages: Path) -> List[Path]:
    """Licence and copyright files of the system and the installed packages, sorted by path."""
    found = {p for p in LICENSE_ROOTS[0].glob("*") if p.is_file()}
    found |= {p for p in LICENSE_ROOTS[1].glob("*/copyright") if p.is_file()}
    found |= {p for p in site_packages.rglob("*") if LICENSE_NAMES.match(p.name) and p.is_file()
              and p.stat().st_size <= 400_000}
    return sorted(found)


def license_documents(files: Sequence[Path], excluded: set) -> Iterator[str]:
    """Each file's paragraphs not seen before (in an earlier file or in ``excluded``), cut into documents.
    Licence texts are copied into many packages; paragraph-level deduplication leaves one copy of each."""
    seen = set(excluded)
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        fresh = []
        for paragraph in re.split(r"\n\s*\n", text):
            key = _paragraph_key(paragraph)
            if len(paragraph.strip()) >= 20 and key not in seen:
                seen.add(key)
                fresh.append(paragraph.strip("\n"))
        yield from split_paragraph_docs("\n\n".join(fresh))


# ----------------------------------------------------------------------------------------------- math
def math_documents(seed: int, questions: set) -> Iterator[str]:
    """The embedded math generator's endless document stream for ``seed`` (the embedded corpus's
    generate_math_documents with another seed); adds each question to ``questions``."""
    import random

    rng = random.Random(seed)
    while True:
        exercise = rng.choice(TEMPLATES)(rng)
        questions.add(exercise.question)
        yield exercise.render(rng)


def benchmark_files(out: Path, count: int, train_questions: set) -> Dict[str, int]:
    """GSM8k-shaped (word problems) and MATH500-shaped (drills) test files from a held-out seed."""
    import random

    rng = random.Random(BENCHMARK_SEED)
    rows: Dict[str, List[dict]] = {"gsm8k": [], "math500": []}
    dropped = 0
    while min(len(r) for r in rows.values()) < count:
        template = rng.choice(WORD_PROBLEMS + DRILLS)
        ex = template(rng)
        name = "gsm8k" if template in WORD_PROBLEMS else "math500"
        if ex.question in train_questions:
            dropped += 1
            continue
        if len(rows[name]) >= count:
            continue
        answer = ex.answer_text or fmt(ex.answer)
        solution = "\n".join(ex.steps)
        if name == "gsm8k":
            rows[name].append({"question": ex.question, "answer": f"{solution}\n#### {answer}"})
        else:
            rows[name].append({"problem": ex.question, "solution": f"{solution}\nThe answer is ${answer}$.",
                               "answer": answer, "subject": template.__name__, "level": 1,
                               "unique_id": f"synthetic/{template.__name__}/{len(rows[name])}.json"})
    for name, items in rows.items():
        path = out / "benchmarks" / name / "test.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in items))
    return {"examples_per_benchmark": count, "dropped_as_in_training": dropped}


# ------------------------------------------------------------------------------------------------ out
def write_domain(out: Path, name: str, docs: Iterable[str], max_chars: float) -> Dict[str, object]:
    """Write documents (deduplicated exactly) to NAME.jsonl.gz until ``max_chars``; return its manifest entry."""
    seen, n_docs, n_chars = set(), 0, 0
    path = out / f"{name}.jsonl.gz"
    with gzip.GzipFile(path, "wb", mtime=0) as gz:
        for doc in docs:
            if n_chars >= max_chars:
                break
            if len(doc) < MIN_DOC_CHARS or "\x00" in doc:
                continue
            digest = hashlib.sha256(doc.encode()).digest()
            if digest in seen:
                continue
            seen.add(digest)
            gz.write((json.dumps({"text": doc}) + "\n").encode())
            n_docs += 1
            n_chars += len(doc)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    print(f"{name}: {n_docs} documents, {n_chars / 1e6:.1f}M characters, {path.stat().st_size / 2**20:.1f} MiB",
          flush=True)
    return {"file": path.name, "documents": n_docs, "characters": n_chars, "bytes": path.stat().st_size,
            "sha256": sha}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "minirepro")
    p.add_argument("--web-chars", type=float, default=40e6)
    p.add_argument("--code-chars", type=float, default=40e6)
    p.add_argument("--math-chars", type=float, default=60e6)
    p.add_argument("--license-chars", type=float, default=8e6)
    p.add_argument("--benchmark-examples", type=int, default=500)
    p.add_argument("--site-packages", type=Path, default=Path(site.getsitepackages()[0]))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    def web() -> Iterator[str]:
        yield from man_documents()
        yield from package_readmes(args.site_packages)

    web_docs: List[str] = []

    def kept(docs: Iterable[str]) -> Iterator[str]:
        for doc in docs:
            web_docs.append(doc)
            yield doc

    questions: set = set()  # of the generated training math (includes a few generated past the budget)
    legal = load_documents("legal")
    manifest = {
        "description": "mini-reproduction corpus; rebuild with data_pipelines/minirepro/build_corpus.py",
        "python": sys.version.split()[0],
        "domains": {
            "web": {**write_domain(args.out, "web", kept(web()), args.web_chars), "role": "train",
                    "source": f"man pages {MAN_ROOT}/{{{','.join(MAN_SECTIONS)}}} (roff to text) and "
                              f"package METADATA long descriptions of {args.site_packages}"},
            "code": {**write_domain(args.out, "code", code_documents(args.site_packages), args.code_chars),
                     "role": "train", "source": f"Python files of {args.site_packages}"},
            "math": {**write_domain(args.out, "math", math_documents(MATH_SEED, questions), args.math_chars), "role": "train",
                     "source": f"nexus_pretrain.data.embedded_math, seed {MATH_SEED}"},
            "legal": {**write_domain(args.out, "legal", legal, float("inf")), "role": "ood",
                      "source": "the embedded corpus's legal domain"},
        },
    }
    licenses = license_documents(license_files(args.site_packages), paragraph_keys(web_docs))
    manifest["domains"]["licenses"] = {
        **write_domain(args.out, "licenses", licenses, args.license_chars), "role": "ood",
        "source": f"{LICENSE_ROOTS[0]}/*, {LICENSE_ROOTS[1]}/*/copyright and LICENSE/COPYING/NOTICE files of "
                  f"{args.site_packages}, deduplicated by paragraph, web paragraphs removed"}
    manifest["benchmarks"] = benchmark_files(args.out, args.benchmark_examples, questions)
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
