"""Generation tasks on a short-context model: the generated length is capped at half the context."""

import json
import logging

import pytest
import torch

from nexus_pretrain.data.embedded import load_tokenizer
from nexus_pretrain.evaluation.benchmarks import (DEFAULT_GEN_TOKS, cap_generation, generation_lengths,
                                                  render_tasks, select)
from nexus_pretrain.model.hf import export_hf
from nexus_pretrain.model.llama import Llama, ModelArgs
from nexus_pretrain.model.presets import PRESETS

pytest.importorskip("lm_eval")  # the eval extra


@pytest.fixture(scope="module")
def short_context_model(tmp_path_factory):
    """The demo's shape: a tiny Llama whose context is 128 tokens."""
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    args = ModelArgs(**{**PRESETS["tiny"], "n_layers": 1, "vocab_size": -(-len(tokenizer) // 64) * 64,
                        "max_seq_len": 128})
    return export_hf(Llama(args).eval(), tmp_path_factory.mktemp("hf128"), tokenizer=tokenizer)


def test_task_lengths_and_yaml_caps():
    assert generation_lengths(select(["humaneval", "gsm8k", "mmlu"])) == {"humaneval": 1024, "gsm8k": DEFAULT_GEN_TOKS}
    explicit = "generation_kwargs:\n  max_gen_toks: 1024\n  until: [x]\n"
    implicit = "generation_kwargs:\n  until: [x]\n"
    assert cap_generation(explicit, 64) == "generation_kwargs:\n  max_gen_toks: 64\n  until: [x]\n"
    assert cap_generation(explicit, 2048) == explicit  # a cap never raises a task's own length
    assert cap_generation(implicit, 64) == "generation_kwargs:\n  max_gen_toks: 64\n  until: [x]\n"
    assert cap_generation(implicit, 512) == implicit  # lm-eval's default 256 is already below
    assert cap_generation("output_type: multiple_choice\n", 64) == "output_type: multiple_choice\n"


def test_render_caps_every_generative_task(benchmark_dir, tmp_path):
    out = render_tasks(select(["bbh", "gsm8k", "humaneval"]), benchmark_dir, tmp_path, max_gen_toks=64)
    assert "max_gen_toks: 64" in (out / "bbh" / "_template_yaml").read_text()
    assert "max_gen_toks: 64" in (out / "gsm8k" / "nexus_gsm8k.yaml").read_text()
    assert "max_gen_toks: 64" in (out / "humaneval" / "nexus_humaneval.yaml").read_text()


@pytest.mark.slow  # lm-eval start-up: ~10 s
def test_humaneval_quick_check_runs_on_a_128_token_model(short_context_model, benchmark_dir, caplog):
    """The README's quick check (humaneval, --limit) on the demo's context: lm-eval refused 1024 new tokens
    in a 128-token context; now one warning, 64 new tokens, and the cap in the results."""
    from nexus_pretrain.evaluation.harness import run_harness

    with caplog.at_level(logging.WARNING, logger="nexus_pretrain.evaluation.harness"):
        out = run_harness(short_context_model, select(["humaneval"]), benchmark_dir, limit=1, batch_size=1)
    warnings = [r.getMessage() for r in caplog.records if r.name == "nexus_pretrain.evaluation.harness"]
    assert len(warnings) == 1 and "context is 128 tokens: generation capped at 64" in warnings[0]
    assert "humaneval asks for 1024" in warnings[0]
    assert out["config"]["max_gen_toks"] == 64
    assert 0.0 <= out["accuracy"]["HumanEval"] <= 100.0
    assert json.loads((short_context_model / "config.json").read_text())["max_position_embeddings"] == 128
