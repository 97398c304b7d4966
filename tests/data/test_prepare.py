"""Recipes -> nexus-data prepare -> token shards -> streams: round trip, incremental, resume, bad input."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from nexus_pretrain.cli import data as data_cli
from nexus_pretrain.data import embedded, prepare as prep, store
from nexus_pretrain.data.prepare import is_validation, prepare
from nexus_pretrain.data.recipe import iter_documents, load_recipe

from .conftest import make_documents, write_recipe

RECIPES = Path(__file__).resolve().parents[2] / "data_pipelines" / "recipes"


def decode_split(root: Path, domain: str, split: str) -> list[str]:
    tokenizer = Tokenizer.from_file(str(embedded.tokenizer_dir() / "tokenizer.json"))
    stream = np.asarray(store.open_stream(root, domain, split, verify=True))
    starts = list(store.document_starts(root, domain, split)) + [len(stream)]
    assert np.all(stream[np.array(starts[1:]) - 1] == 0)  # every document ends with EOS (id 0)
    return [tokenizer.decode(stream[a:b - 1].tolist(), skip_special_tokens=False) for a, b in zip(starts, starts[1:])]


def expected_split(docs: list[str], domain: str, val_fraction: float) -> dict[str, list[str]]:
    val = [d for i, d in enumerate(docs) if is_validation(domain, i, val_fraction)]
    train = [d for i, d in enumerate(docs) if not is_validation(domain, i, val_fraction)]
    return {"train": train, "val": val}


def shard_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_jsonl_round_trip_decodes_to_source_documents(tmp_path, fineweb_like):
    recipe, docs = fineweb_like
    [summary] = prepare([recipe], tmp_path / "out", progress=False)
    assert summary["tokens"] > 0 and not summary["skipped"]
    want = expected_split(docs, "web", 0.1)
    assert 0 < len(want["val"]) < 30
    for split in ("train", "val"):
        assert decode_split(tmp_path / "out", "web", split) == want[split]
    manifest = store.read_manifest(tmp_path / "out", "web")
    assert manifest["complete"] and manifest["dtype"] == "uint16" and manifest["tokenizer"]["name"] == "embedded"
    assert manifest["splits"]["train"]["documents"] + manifest["splits"]["val"]["documents"] == len(docs)


def test_parquet_starcoder_shape_filters_dedup_and_small_shards(tmp_path):
    docs = make_documents(80, seed=2)
    rows = docs + docs[:10] + ["x", "y" * 5000]  # 10 exact duplicates, one too short, one too long
    table = pa.table({"content": rows, "max_stars_repo_path": ["a.py"] * len(rows), "id": list(range(len(rows)))})
    pq.write_table(table, tmp_path / "train-00000.parquet")
    recipe = write_recipe(tmp_path / "code.yaml", "domain: code\nsource:\n  local: {paths: ['*.parquet'], format: "
                          "parquet, text_field: content}\nfilters: {min_chars: 2, max_chars: 4000, dedup: exact}\n"
                          "val_fraction: 0.2\n")
    assert list(iter_documents(load_recipe(recipe))) == docs
    prepare([recipe], tmp_path / "out", shard_tokens=500, progress=False)
    manifest = store.read_manifest(tmp_path / "out", "code")
    assert len(manifest["splits"]["train"]["shards"]) > 3  # several shards, read back as one stream
    assert isinstance(store.open_stream(tmp_path / "out", "code", "train"), store.ShardedStream)
    want = expected_split(docs, "code", 0.2)
    for split in ("train", "val"):
        assert decode_split(tmp_path / "out", "code", split) == want[split]
    stream = store.open_stream(tmp_path / "out", "code", "train")
    whole = np.asarray(stream)
    for a, b in [(0, 10), (495, 1207), (len(whole) - 3, len(whole)), (10, 10)]:
        np.testing.assert_array_equal(stream[a:b], whole[a:b])


def test_txt_documents_ood_and_token_budget(tmp_path):
    docs = make_documents(30, seed=3)
    for i, text in enumerate(docs):
        (tmp_path / f"doc{i:02d}.txt").write_text(text, encoding="utf-8")
    recipe = write_recipe(tmp_path / "legal.yaml", "domain: legal\nsource:\n  local: {paths: ['doc*.txt'], "
                                                   "format: txt}\nood: true\n")
    prepare([recipe], tmp_path / "out", progress=False)
    assert decode_split(tmp_path / "out", "legal", "val") == docs
    with pytest.raises(ValueError, match="no train tokens"):
        store.open_stream(tmp_path / "out", "legal", "train")

    budget = write_recipe(tmp_path / "b.yaml", "domain: b\nsource:\n  local: {paths: ['doc*.txt'], format: txt}\n"
                                               "token_budget: 300\nood: true\n")
    prepare([budget], tmp_path / "out", progress=False)
    manifest = store.read_manifest(tmp_path / "out", "b")
    kept = manifest["splits"]["val"]["documents"]
    assert manifest["tokens_done"] >= 300 and 0 < kept < len(docs)
    assert decode_split(tmp_path / "out", "b", "val") == docs[:kept]


def test_rerun_is_a_noop_and_workers_do_not_change_output(tmp_path, fineweb_like):
    recipe, _ = fineweb_like
    prepare([recipe], tmp_path / "one", shard_tokens=700, progress=False)
    before = shard_bytes(tmp_path / "one")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "one").rglob("*")}
    [again] = prepare([recipe], tmp_path / "one", shard_tokens=700, progress=False)
    assert again["skipped"] and shard_bytes(tmp_path / "one") == before
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / "one").rglob("*")}
    prepare([recipe], tmp_path / "two", shard_tokens=700, workers=2, progress=False)
    assert shard_bytes(tmp_path / "two") == before


@pytest.mark.parametrize("encoder", ["hf", "tiktoken"])
@pytest.mark.parametrize("workers", [1, 2])
def test_shards_hold_exactly_the_ids_of_plain_encode_per_document(tmp_path, monkeypatch, workers, encoder):
    # The batched encoder (the tokenizer's own, or tiktoken) and its ids-to-array path must give, byte for
    # byte, the ids of one plain `Tokenizer.encode` per document followed by EOS, non-ASCII text, a literal
    # special token and multi-batch runs included.
    if encoder == "tiktoken":
        pytest.importorskip("tiktoken")
    docs = make_documents(150, seed=7, max_words=400) + ["  leading spaces\n\n\ttabs ", "ünïcödé — “quotes” …",
                                                         "中文文本，标点。\n" * 50, "🙂" * 300, "x = 1\r\n" * 40,
                                                         "text with a literal <|endoftext|> in it", "'s 's'll\u00a0 12"]
    (tmp_path / "mixed.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs),
                                          encoding="utf-8")
    recipe = write_recipe(tmp_path / "mixed.yaml", "domain: mixed\nsource:\n  local: {paths: ['mixed.jsonl'], "
                                                   "format: jsonl}\nval_fraction: 0.2\n")
    monkeypatch.setattr(prep, "BATCH_CHARS", 4000)  # several batches, so several tasks per worker
    prepare([recipe], tmp_path / "out", shard_tokens=3000, workers=workers, progress=False, encoder=encoder)
    tokenizer = Tokenizer.from_file(str(embedded.tokenizer_dir() / "tokenizer.json"))
    for split, texts in expected_split(docs, "mixed", 0.2).items():
        want = [i for text in texts for i in tokenizer.encode(text, add_special_tokens=False).ids + [0]]
        stream = np.asarray(store.open_stream(tmp_path / "out", "mixed", split, verify=True))
        assert stream.dtype == np.uint16 and stream.tolist() == want


@pytest.mark.parametrize("batch_chars", [1, 500, 3000])
def test_batch_size_does_not_change_output(tmp_path, monkeypatch, fineweb_like, batch_chars):
    # Shards are cut and the token budget applied per document, whatever the worker tasks' size.
    recipe, _ = fineweb_like
    budget = write_recipe(tmp_path / "b.yaml", "domain: b\nsource:\n  local: {paths: ['fineweb/*.jsonl'], "
                                               "format: jsonl}\nval_fraction: 0.3\ntoken_budget: 2000\n")
    prepare([recipe, budget], tmp_path / "default", shard_tokens=700, progress=False)
    monkeypatch.setattr(prep, "BATCH_CHARS", batch_chars)
    prepare([recipe, budget], tmp_path / "small", shard_tokens=700, workers=2 if batch_chars == 500 else 1,
            progress=False)
    assert shard_bytes(tmp_path / "small") == shard_bytes(tmp_path / "default")
    assert len(store.read_manifest(tmp_path / "small", "web")["splits"]["train"]["shards"]) > 3


@pytest.mark.parametrize("fail_at_write", [2, 3, 6])
def test_interrupted_run_resumes_to_identical_shards(tmp_path, monkeypatch, fineweb_like, fail_at_write):
    recipe, _ = fineweb_like
    prepare([recipe], tmp_path / "straight", shard_tokens=600, progress=False)
    real_write, calls = store.write_shard, []

    def crashing_write(*args, **kwargs):
        calls.append(1)
        if len(calls) == fail_at_write:
            raise KeyboardInterrupt("simulated crash")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(store, "write_shard", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        prepare([recipe], tmp_path / "resumed", shard_tokens=600, progress=False)
    partial = store.read_manifest(tmp_path / "resumed", "web")
    if fail_at_write > 2:  # the first commit (a train and a val shard) went through
        assert not partial["complete"] and 0 < partial["documents_done"] < 120
        with pytest.raises(ValueError, match="did not finish"):
            store.open_stream(tmp_path / "resumed", "web", "train")
    else:
        assert partial is None
    monkeypatch.setattr(store, "write_shard", real_write)
    prepare([recipe], tmp_path / "resumed", shard_tokens=600, progress=False)
    assert shard_bytes(tmp_path / "resumed") == shard_bytes(tmp_path / "straight")


def test_truncated_and_corrupt_shards_name_the_file(tmp_path, fineweb_like):
    recipe, _ = fineweb_like
    prepare([recipe], tmp_path / "out", progress=False)
    shard = tmp_path / "out" / "web" / "train" / "shard_00000.bin"
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF
    shard.write_bytes(bytes(data))
    store.open_stream(tmp_path / "out", "web", "train")  # same size: only the checksum catches it
    with pytest.raises(ValueError, match=rf"^{shard}: checksum mismatch"):
        store.open_stream(tmp_path / "out", "web", "train", verify=True)
    shard.write_bytes(bytes(data[:-2]))
    with pytest.raises(ValueError, match=rf"^{shard}: truncated or corrupt shard"):
        store.open_stream(tmp_path / "out", "web", "train")
    shard.unlink()
    with pytest.raises(ValueError, match=rf"^{shard}: shard listed in the manifest is missing"):
        store.open_stream(tmp_path / "out", "web", "train")


def other_tokenizer(folder: Path) -> Path:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(make_documents(50, seed=9),
                                trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>").save_pretrained(folder)
    return folder


def test_tokenizer_mismatch_is_an_error_and_other_tokenizers_work(tmp_path, fineweb_like):
    recipe, docs = fineweb_like
    prepare([recipe], tmp_path / "out", progress=False)
    tok_dir = other_tokenizer(tmp_path / "tok")
    with pytest.raises(ValueError, match=r"manifest.json: shards were made with tokenizer 'embedded'"):
        prepare([recipe], tmp_path / "out", tokenizer=str(tok_dir), progress=False)
    prepare([recipe], tmp_path / "other", tokenizer=str(tok_dir), progress=False)
    manifest = store.read_manifest(tmp_path / "other", "web")
    assert manifest["tokenizer"]["name"] == str(tok_dir) and manifest["vocab_size"] == 300


def test_bad_inputs_give_one_line_errors_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9 latin-1"}\n')
    recipe = write_recipe(tmp_path / "r.yaml", "domain: web\nsource:\n  local: {paths: [bad.jsonl], format: jsonl}\n")
    with pytest.raises(ValueError, match=rf"^{bad}: not valid UTF-8"):
        prepare([recipe], tmp_path / "out", progress=False)
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\xfe broken\n")
    txt = write_recipe(tmp_path / "t.yaml", "domain: t\nsource:\n  local: {paths: [bad.txt], format: txt}\n")
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'bad.txt'}: not valid UTF-8"):
        prepare([txt], tmp_path / "out", progress=False)

    (tmp_path / "empty.jsonl").write_text('{"text": ""}\n', encoding="utf-8")
    empty = write_recipe(tmp_path / "e.yaml", "domain: e\nsource:\n  local: {paths: [empty.jsonl], format: jsonl}\n")
    with pytest.raises(ValueError, match=rf"^{empty}: no documents left"):
        prepare([empty], tmp_path / "out", progress=False)
    assert store.read_manifest(tmp_path / "out", "e") is None

    cases = {"domain: w\nsource:\n  local: {paths: [nothing*.jsonl], format: jsonl}\n": "source.local.paths",
             "domain: w\nsource:\n  hub: {name: x}\n": "source.hub.text_field: missing",
             "domain: w\nsource:\n  embedded: {domain: w}\ntoken_budjet: 5\n": "token_budjet: unknown key",
             "domain: w\nsource:\n  embedded: {domain: poetry}\n": "source.embedded.domain",
             "domain: w\nsource:\n  embedded: {domain: web}\nval_fraction: 1.5\n": "val_fraction"}
    for text, key in cases.items():
        path = write_recipe(tmp_path / "case.yaml", text)
        with pytest.raises(ValueError, match=rf"^{path}: {key}"):
            load_recipe(path)

    with pytest.raises(SystemExit):
        data_cli(["prepare", str(recipe), "--out", str(tmp_path / "cli"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}: not valid UTF-8") and "\n" not in err


def test_shipped_recipes_are_valid_and_embedded_recipe_matches_corpus(tmp_path):
    recipes = {p.stem: load_recipe(p) for p in sorted(RECIPES.glob("*.yaml"))}
    assert {"fineweb_edu", "finemath", "open_web_math", "starcoderdata_python"} <= set(recipes)
    assert recipes["starcoderdata_python"].source == {"name": "bigcode/starcoderdata", "data_dir": "python",
                                                      "split": "train", "text_field": "content"}
    assert recipes["embedded_legal"].ood
    data_cli(["prepare", str(RECIPES / "embedded_web.yaml"), "--out", str(tmp_path), "--workers", "1",
              "--no-progress"])
    docs = embedded.load_documents("web")
    assert decode_split(tmp_path, "web", "val") == expected_split(docs, "web", 0.05)["val"]
    manifest = json.loads((tmp_path / "web" / "manifest.json").read_text())
    assert manifest["source"] == "embedded:web" and manifest["documents_done"] == len(docs)
    assert prep.DEFAULT_SHARD_TOKENS == manifest["shard_tokens"]
