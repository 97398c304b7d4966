"""--encoder tiktoken: which tokenizers it accepts (one-line errors for the others) and the check that
stops prepare when tiktoken would give other ids than the tokenizer."""

import json

import pytest

from nexus_pretrain.data import embedded, prepare as prep
from nexus_pretrain.data.prepare import prepare
from nexus_pretrain.data.tiktoken_encoder import GPT2_PATTERN, encode_batch, tiktoken_encoding

from .conftest import make_documents, write_recipe

pytest.importorskip("tiktoken")
SPEC = json.loads((embedded.tokenizer_dir() / "tokenizer.json").read_text())


def variant(**changes) -> str:
    spec = json.loads(json.dumps(SPEC))
    for key, value in changes.items():
        target, _, field = key.partition("__")
        if field:
            spec[target][field] = value
        else:
            spec[target] = value
    return json.dumps(spec)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_ids_equal_the_tokenizers_for_every_thread_count(threads):
    from tokenizers import Tokenizer

    hf = Tokenizer.from_str(json.dumps(SPEC))
    docs = make_documents(40, seed=3) + ["", "a", "<|endoftext|>", "x<|endoftext|>y", " \n\t  ", "Ωμέγα 𝔘𝔫𝔦"]
    want = [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)]
    assert encode_batch(tiktoken_encoding(json.dumps(SPEC)), docs, threads) == want


def test_a_split_regex_before_a_plain_byte_level_is_accepted():
    pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": GPT2_PATTERN}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    assert tiktoken_encoding(variant(pre_tokenizer=pre)).encode("hello world") == \
        tiktoken_encoding(json.dumps(SPEC)).encode("hello world")


@pytest.mark.parametrize("changes, message", [
    ({"normalizer": {"type": "NFC"}}, "it has a normalizer"),
    ({"pre_tokenizer": {"type": "Whitespace"}}, "is not ByteLevel or Split"),
    ({"pre_tokenizer": None}, "it has no pre-tokenizer"),
    ({"pre_tokenizer__add_prefix_space": True}, "adds a prefix space"),
    ({"model__byte_fallback": True}, "byte fallback"),
    ({"model__type": "Unigram"}, "its model is Unigram"),
])
def test_other_tokenizers_are_refused_in_one_line(changes, message):
    with pytest.raises(ValueError, match=f"^--encoder tiktoken needs a byte-level BPE tokenizer: .*{message}"):
        tiktoken_encoding(variant(**changes))


def test_merges_out_of_id_order_are_refused():
    spec = json.loads(json.dumps(SPEC))
    spec["model"]["merges"] = spec["model"]["merges"][::-1]
    with pytest.raises(ValueError, match="strictly increasing ids"):
        tiktoken_encoding(json.dumps(spec))


def test_prepare_stops_when_tiktoken_would_differ(tmp_path, monkeypatch):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in make_documents(5)))
    recipe = write_recipe(tmp_path / "d.yaml", "domain: d\nsource:\n  local: {paths: ['d.jsonl'], format: jsonl}\n")
    monkeypatch.setattr(prep, "encode_batch", lambda enc, texts, threads: [[1] for _ in texts])
    with pytest.raises(ValueError, match=r"d\.yaml: --encoder tiktoken gives other ids than the tokenizer for "
                                         r"document 0 "):
        prepare([recipe], tmp_path / "out", progress=False, encoder="tiktoken")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="--encoder 'fast' is not one of hf, tiktoken"):
        prepare([recipe], tmp_path / "out", progress=False, encoder="fast")
