import json

import pytest
import torch

# Tiny models gain nothing from intra-op threads; on a busy 2-core machine two threads spin against each other.
torch.set_num_threads(1)

GSM8K = [
    {"question": "Tom has 3 apples and buys 2 more. How many apples does he have?",
     "answer": "Tom has 3 + 2 = <<3+2=5>>5 apples.\n#### 5"},
    {"question": "A box holds 4 pens. How many pens are in 3 boxes?",
     "answer": "There are 4 * 3 = <<4*3=12>>12 pens.\n#### 12"},
    {"question": "Sam reads 10 pages a day. How many pages in 2 days?",
     "answer": "Sam reads 10 * 2 = <<10*2=20>>20 pages.\n#### 20"},
]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A 3-step tiny run on the embedded corpus with checkpoints at steps 2 and 3."""
    from nexus_pretrain.demo import compose_config
    from nexus_pretrain.train.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = compose_config(["optim=adamw", "model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=2",
                          "model.ffn_dim=64", "data.seq_len=32", "data.eval_sequences=4", "trainer.global_batch=4",
                          "trainer.micro_batch=2", "trainer.max_steps=3", "trainer.eval_every=3",
                          "trainer.checkpoint_every=2", "trainer.keep_last=3", "trainer.export_hf=false",
                          "schedule.warmup_steps=1", "schedule.decay_steps=1", "logging.progress_bar=false",
                          f"trainer.run_dir={run_dir}"])
    Trainer(cfg).fit()
    return run_dir


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory):
    """A local GSM8k copy in its public format (DATA_DIR/gsm8k/test.jsonl)."""
    root = tmp_path_factory.mktemp("benchmarks")
    (root / "gsm8k").mkdir()
    (root / "gsm8k" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM8K))
    return root


@pytest.fixture(scope="session")
def final(run_dir):
    from nexus_pretrain.analysis.sources import load_checkpoint_model, resolve_checkpoints

    return load_checkpoint_model(resolve_checkpoints([run_dir], all_of_run=False)[0])


@pytest.fixture(scope="session")
def gsm8k(final, bench_dir):
    """Gold-answer sequences of the GSM8k copy for the final checkpoint's tokenizer and context."""
    from nexus_pretrain.analysis.sources import downstream_sequences

    return downstream_sequences(final.tokenizer, ["gsm8k"], bench_dir, final.model.args.max_seq_len)["GSM8k"]


@pytest.fixture(scope="session")
def train_set(final):
    from nexus_pretrain.analysis.sources import training_set

    return training_set(final.cfg, n_sequences=3, batch_size=2)
