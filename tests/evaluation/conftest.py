import pytest
import torch

from nexus_pretrain.data.embedded import load_tokenizer
from nexus_pretrain.model.hf import export_hf
from nexus_pretrain.model.llama import Llama, ModelArgs
from nexus_pretrain.model.presets import PRESETS

from .benchmark_data import write_benchmark_data

# Tiny models gain nothing from intra-op threads, and on a busy 2-core machine two threads spin against
# each other: a tiny forward pass takes 20x longer than on one.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory):
    """A randomly initialised tiny Llama with the embedded tokenizer, exported as a Hugging Face directory."""
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    args = ModelArgs(**{**PRESETS["tiny"], "vocab_size": -(-len(tokenizer) // 64) * 64, "max_seq_len": 256})
    model = Llama(args).eval()
    return export_hf(model, tmp_path_factory.mktemp("hf"), tokenizer=tokenizer)


@pytest.fixture(scope="session")
def benchmark_dir(tmp_path_factory):
    return write_benchmark_data(tmp_path_factory.mktemp("benchmarks"))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A 3-step nexus-train run (tiny shape, embedded corpus) with config.yaml, metrics.jsonl and hf/; and its
    final in-loop metrics."""
    from nexus_pretrain.demo import compose_config
    from nexus_pretrain.train.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("runs") / "tiny_nexus"
    cfg = compose_config(["optim=nexus", "model.dim=64", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=2",
                          "model.ffn_dim=128", "data.seq_len=64", "data.eval_sequences=8", "trainer.global_batch=4",
                          "trainer.micro_batch=2", "trainer.max_steps=3", "trainer.eval_every=3",
                          "schedule.warmup_steps=1", "schedule.decay_steps=1", "logging.progress_bar=false",
                          f"trainer.run_dir={run_dir}"])
    final = Trainer(cfg).fit()
    return run_dir, final
