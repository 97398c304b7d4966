"""Tests of the embedded corpus snapshot, its tokenizer and the token streams built from it."""

from __future__ import annotations

import gzip
import hashlib
import math
import re
from fractions import Fraction

import numpy as np
import pytest

from nexus_pretrain.data import embedded, tokens
from nexus_pretrain.data.embedded import (DOMAINS, OOD_DOMAINS, TRAIN_DOMAINS, corpus_dir, load_documents,
                                          load_manifest, load_records, load_tokenizer, tokenizer_dir)
from nexus_pretrain.data.embedded_math import DEFAULT_SEED, generate_math_documents
from nexus_pretrain.data.tokens import (domain_tokens, split_documents, tokenize_documents, unigram_entropy,
                                        validation_indices)

# --- an independent checker for the math domain -------------------------------------------------
# Solutions write every arithmetic step as an explicit chain such as "2 * (3 + 4) = 14" or
# "1/2 = 3/6"; every chain must hold exactly and the final answer must be the value of one of them.
# A chain may not continue an algebraic expression ("3x + 7 = 22" contains no checkable chain).
_NUMBER = r"\$?-?\d+(?:\.\d+)?"
_ATOM = rf"\(*{_NUMBER}\)*"
_EXPRESSION = rf"{_ATOM}(?:\s?[-+*/]\s?{_ATOM})*"
_CHAIN = re.compile(rf"(?<![\w.$/*+\-()^])(?<![-+*/]\s)({_EXPRESSION}(?:\s=\s{_EXPRESSION})+)(?![\w(])")
_ANSWER = re.compile(r"The answer is (-?\d+(?:\.\d+)?(?:/\d+)?)\.$")
_EQUATION = re.compile(r"Solve for (\w): (.+ = .+)\.$", re.M)


def _evaluate(expression: str) -> Fraction:
    python = re.sub(r"\d+(?:\.\d+)?", lambda m: f"Fraction('{m.group()}')", expression.replace("$", ""))
    return eval(python, {"Fraction": Fraction, "__builtins__": {}})  # input is checked by _CHAIN


def _substitute(equation: str, variable: str, value: Fraction) -> str:
    """'3x + 7 = 22' with x = 5 -> '3 * (5) + 7 = 22'; '2(x + 1) = 8' -> '2 * ((3) + 1) = 8'."""
    replaced = re.sub(rf"(\d)?{variable}\b", lambda m: (f"{m.group(1)} * " if m.group(1) else "") + f"({value})",
                      equation)
    return re.sub(r"(\d)\(", r"\1 * (", replaced)


def check_math_document(document: str) -> int:
    """Assert that a math document is arithmetically correct; return the number of checked chains."""
    values = []
    for chain in _CHAIN.finditer(document):
        sides = {_evaluate(side) for side in chain.group(1).split(" = ")}
        assert len(sides) == 1, f"false equality {chain.group(1)!r} in:\n{document}"
        values.append(sides.pop())
    answer_match = _ANSWER.search(document)
    assert answer_match, f"no final answer in:\n{document}"
    answer = Fraction(answer_match.group(1))
    assert answer in values, f"answer {answer} is not the result of any step in:\n{document}"
    equation = _EQUATION.search(document)
    if equation:
        variable, text = equation.groups()
        left, right = _substitute(text, variable, answer).split(" = ")
        assert _evaluate(left) == _evaluate(right), f"{answer} does not solve {text!r}"
    return len(values)


# --- corpus --------------------------------------------------------------------------------------

def test_domain_names_are_the_interface() -> None:
    assert TRAIN_DOMAINS == ("web", "math", "code")
    assert OOD_DOMAINS == ("legal",)
    assert DOMAINS == TRAIN_DOMAINS + OOD_DOMAINS


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_loads_non_empty_documents(domain: str) -> None:
    documents = load_documents(domain)
    assert len(documents) >= 50
    assert all(isinstance(doc, str) and doc.strip() for doc in documents)
    assert {record["domain"] for record in load_records(domain)} == {domain}
    assert all(record["source"] for record in load_records(domain))


def test_unknown_domain_raises_naming_valid_domains() -> None:
    with pytest.raises(ValueError, match="web, math, code, legal"):
        load_documents("poetry")


@pytest.mark.parametrize("domain", DOMAINS)
def test_corpus_files_match_manifest(domain: str) -> None:
    info = load_manifest()["domains"][domain]
    compressed = (corpus_dir() / info["file"]).read_bytes()
    assert hashlib.sha256(compressed).hexdigest() == info["sha256"]
    assert hashlib.sha256(gzip.decompress(compressed)).hexdigest() == info["content_sha256"]
    documents = load_documents(domain)
    assert len(documents) == info["documents"]
    assert sum(map(len, documents)) == info["characters"]
    assert info["role"] == ("ood" if domain in OOD_DOMAINS else "train")
    assert info["source"] and info["licence"]


def test_snapshot_ships_notice_and_is_small() -> None:
    notice = (corpus_dir() / "NOTICE").read_text(encoding="utf-8")
    assert "Python Software Foundation License Version 2" in notice
    package_bytes = sum(p.stat().st_size for d in (corpus_dir(), tokenizer_dir()) for p in d.iterdir())
    assert package_bytes < 8 * 2**20


# --- math domain ---------------------------------------------------------------------------------

def test_math_generator_reproduces_the_snapshot() -> None:
    regenerated = generate_math_documents(300, DEFAULT_SEED)
    assert regenerated == load_documents("math")[:300]
    assert generate_math_documents(300, DEFAULT_SEED + 1) != regenerated


def test_math_snapshot_solutions_are_correct() -> None:
    checked = [check_math_document(doc) for doc in load_documents("math")]
    assert min(checked) >= 1


def test_math_solutions_are_correct_for_other_seeds() -> None:
    for seed in (1, 2, 3):
        for doc in generate_math_documents(400, seed):
            check_math_document(doc)


def test_math_checker_rejects_wrong_arithmetic() -> None:
    document = next(doc for doc in load_documents("math") if "Solve for" in doc)
    chain = next(_CHAIN.finditer(document))
    last_number = list(re.finditer(r"\d+", chain.group(1)))[-1]
    position = chain.start(1) + last_number.start()
    broken = document[:position] + str(int(last_number.group()) + 1) + document[chain.start(1) + last_number.end():]
    with pytest.raises(AssertionError):
        check_math_document(broken)
    wrong_answer = re.sub(r"The answer is (-?\d+)\.$", lambda m: f"The answer is {int(m.group(1)) + 1}.", document)
    with pytest.raises(AssertionError):
        check_math_document(wrong_answer)


# --- tokenizer -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_tokenizer_vocabulary_and_special_token(tokenizer) -> None:
    assert len(tokenizer) == 8192
    assert tokenizer.convert_tokens_to_ids(embedded.END_OF_TEXT) == 0
    assert tokenizer.eos_token_id == tokenizer.bos_token_id == tokenizer.pad_token_id == 0
    assert tokenizer.unk_token is None
    assert load_manifest()["tokenizer"]["trained_on"] == list(TRAIN_DOMAINS)


def test_autotokenizer_loads_the_directory_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(str(tokenizer_dir()))
    assert loaded.eos_token == embedded.END_OF_TEXT and len(loaded) == 8192


@pytest.mark.parametrize("domain", DOMAINS)
def test_tokenizer_round_trips_documents(tokenizer, domain: str) -> None:
    documents = load_documents(domain)
    samples = documents[:: max(1, len(documents) // 25)] + ["  tabs\tand\r\nunicode: é ✓ 😀  "]
    for text in samples:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_tokenize_documents_places_eos_after_each_document(tokenizer) -> None:
    docs = ["The answer is 36.", "", "def f(x):\n    return x\n"]
    stream = tokenize_documents(tokenizer, docs)
    assert stream.dtype == np.uint16
    expected = [i for doc in docs for i in [*tokenizer.encode(doc, add_special_tokens=False), 0]]
    assert stream.tolist() == expected
    assert np.flatnonzero(stream == 0).tolist() == list(np.cumsum([len(tokenizer.encode(d)) + 1 for d in docs]) - 1)
    assert tokenize_documents(tokenizer, []).size == 0


def test_tokenize_documents_ignores_leftover_truncation(tokenizer) -> None:
    long_text = "word " * 50
    tokenizer(long_text, truncation=True, max_length=4)
    assert tokenize_documents(tokenizer, [long_text]).size == len(tokenizer.encode(long_text)) + 1


# --- splits, cache and entropy -------------------------------------------------------------------

@pytest.mark.parametrize("domain", TRAIN_DOMAINS)
def test_train_val_split_is_a_deterministic_partition(domain: str) -> None:
    documents = load_documents(domain)
    held_out = validation_indices(len(documents), 0.05, salt=domain)
    assert held_out == validation_indices(len(documents), 0.05, salt=domain)
    assert 0 < len(held_out) < len(documents)
    assert set(validation_indices(len(documents), 0.02, salt=domain)) <= set(held_out)
    train, val = split_documents(domain, "train"), split_documents(domain, "val")
    assert val == [documents[i] for i in held_out]
    assert train == [doc for i, doc in enumerate(documents) if i not in set(held_out)]
    assert split_documents(domain, "val") == val


def test_ood_domain_is_evaluation_only() -> None:
    assert split_documents("legal", "val") == load_documents("legal")
    with pytest.raises(ValueError, match="out-of-distribution"):
        split_documents("legal", "train")
    with pytest.raises(ValueError, match="out-of-distribution"):
        domain_tokens("legal", "train")
    with pytest.raises(ValueError, match="split"):
        split_documents("web", "test")


def test_domain_tokens_are_cached(tmp_path, tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    first = domain_tokens("legal", "val", cache_dir=tmp_path)
    assert np.array_equal(first, tokenize_documents(tokenizer, load_documents("legal")))
    web_val = domain_tokens("web", "val", tokenizer=tokenizer, cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*/*.npy")) == ["legal-val.npy", "web-val-valfrac0.05.npy"]
    assert not list(tmp_path.glob("*/*.tmp"))

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("cache miss")

    monkeypatch.setattr(tokens, "tokenize_documents", no_tokenizing)
    again = domain_tokens("legal", "val", cache_dir=tmp_path)
    assert again.dtype == first.dtype and np.array_equal(again, first)
    assert np.array_equal(domain_tokens("web", "val", tokenizer=tokenizer, cache_dir=tmp_path), web_val)


def test_unigram_entropy_matches_hand_computed_values() -> None:
    # p = (1/2, 1/4, 1/4): H = 1/2 ln 2 + 2 * 1/4 ln 4 = 3/2 ln 2
    assert unigram_entropy(np.array([5, 5, 1, 9], dtype=np.uint16)) == pytest.approx(1.5 * math.log(2), abs=1e-15)
    assert unigram_entropy(np.array([0, 1], dtype=np.uint32)) == pytest.approx(math.log(2), abs=1e-15)
    assert unigram_entropy(np.array([7, 7, 7])) == 0.0
    with pytest.raises(ValueError):
        unigram_entropy(np.array([], dtype=np.uint16))
