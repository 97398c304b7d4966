"""Shared pieces of the SFT tests: the embedded tokenizer, small configs, a pretrained tiny run and
instruction files shaped like hub datasets (prompt/response columns; a messages column)."""

import json
from pathlib import Path

import pytest

from nexus_pretrain.demo import compose_config

SMALL = ["model.dim=64", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=128",
         "data.eval_sequences=8", "trainer.global_batch=8", "trainer.micro_batch=4", "trainer.log_every=2",
         "trainer.eval_every=0", "trainer.checkpoint_every=0", "schedule.warmup_steps=1", "schedule.decay_steps=1",
         "logging.progress_bar=false"]
SFT = ["data=sft_embedded_math", "data.seq_len=64", "data.sft.max_examples=64", "schedule=cosine",
       "schedule.warmup_steps=0", "optim.lr=1e-3"]


def small_config(run_dir: Path, *overrides: str):
    """A small tiny-model config writing to run_dir (SMALL first, then the overrides)."""
    return compose_config([*SMALL, f"trainer.run_dir={run_dir}", *overrides])


@pytest.fixture(scope="session")
def tokenizer():
    from nexus_pretrain.data.embedded import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def pretrained_run(tmp_path_factory) -> Path:
    """A tiny model pretrained for 2 steps on the embedded corpus (checkpoint at step 2 and hf/)."""
    from nexus_pretrain.train.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("pretrained")
    trainer = Trainer(small_config(run_dir, "data.seq_len=64", "trainer.max_steps=2"))
    trainer.fit()
    trainer.close()
    return run_dir


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def prompt_response_file(tmp_path) -> Path:
    """A jsonl with prompt/response columns (plus an unused id), 40 rows."""
    rows = [{"id": i, "prompt": f"What is {i} + {i}?", "response": f"{i} + {i} = {2 * i}. The answer is {2 * i}."}
            for i in range(40)]
    return write_jsonl(tmp_path / "pairs.jsonl", rows)


@pytest.fixture
def messages_file(tmp_path) -> Path:
    """A parquet shaped like HuggingFaceH4/no_robots (prompt, prompt_id, messages, category), 30 rows."""
    import datasets

    rows = [{"prompt": f"Name {i}.", "prompt_id": str(i), "category": "chat",
             "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Name {i}."},
                          {"role": "assistant", "content": f"Number {i}."}, {"role": "user", "content": "Again?"},
                          {"role": "assistant", "content": f"Still {i}."}]} for i in range(30)]
    path = tmp_path / "no_robots_like.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path
