"""nexus-eval end to end: a trained tiny run, every benchmark through the real lm-eval path, one results JSON."""

import hashlib
import json
from pathlib import Path

import pytest

from nexus_pretrain import cli
from nexus_pretrain.eval_command import translate_overrides
from nexus_pretrain.evaluation.benchmarks import BENCHMARKS, COLUMNS, TASKS_DIR, render_tasks, select
from nexus_pretrain.evaluation.heldout import run_heldout_losses

pytest.importorskip("lm_eval")  # the eval extra


def test_run_heldout_losses_match_the_trainers_in_loop_values(trained_run):
    run_dir, final = trained_run
    losses = run_heldout_losses(run_dir)
    for key in ("val/pretrain", "val/math", "ood/mean"):
        assert losses[key] == pytest.approx(final[key], abs=1e-4)


def test_nexus_eval_writes_one_results_json_with_every_metric(trained_run, benchmark_dir, tmp_path, capsys):
    run_dir, final = trained_run
    out = tmp_path / "results.json"
    cli.evaluate([f"run_dir={run_dir}", f"eval.data_dir={benchmark_dir}", "--limit", "1", "--max-gen-toks", "4",
                  "--out", str(out), "--tag", "smoke"])
    assert f"wrote {out}" in capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["optimizer"] == "nexus(adamw)" and r["tag"] == "smoke" and r["model"] == "tiny"
    assert r["step"] == 3 and r["tokens"] == final["tokens"]
    assert r["config"]["trainer"]["max_steps"] == 3 and r["data_mixture"]["domains"] == {"web": 1.0, "math": 1.0, "code": 1.0}
    m = r["metrics"]
    assert m["pretrain"] == pytest.approx(final["val/pretrain"], abs=1e-4)
    assert m["ood"] == pytest.approx(final["ood/mean"], abs=1e-4)
    assert list(m["accuracy"]) == COLUMNS + ["All"] and list(m["loss"]) == COLUMNS + ["All"]
    assert all(0.0 <= v <= 100.0 for v in m["accuracy"].values())
    assert all(5.0 < v < 12.0 for v in m["loss"].values())  # ~ln(8192) = 9.0 for a barely trained model
    assert m["loss"]["All"] == pytest.approx(sum(m["loss"][c] for c in COLUMNS) / len(COLUMNS))
    assert r["lm_eval"]["version"] == "0.4.13"
    assert r["lm_eval"]["n_samples"]["nexus_mmlu_anatomy"]["effective"] == 1
    assert r["lm_eval"]["results"]["nexus_mmlu"]["sample_count"]["acc,none"] == 57  # one per subject
    assert set(r["task_hashes"]) == set(BENCHMARKS)
    yaml_path = BENCHMARKS["gsm8k"].yaml
    assert r["task_hashes"]["gsm8k"][f"tasks/{yaml_path}"] == hashlib.sha256(
        (TASKS_DIR / yaml_path).read_bytes()).hexdigest()
    assert r["task_hashes"]["gsm8k"]["data/gsm8k/test.jsonl"] == hashlib.sha256(
        (benchmark_dir / "gsm8k" / "test.jsonl").read_bytes()).hexdigest()
    assert r["sandbox"]["network"] in ("namespace", "audit-hook")


def test_reference_answers_score_full_marks_through_the_task_scorers(benchmark_dir):
    """The YAMLs' scoring functions accept the gold answers (HumanEval/MBPP in the sandbox, MATH normalized)."""
    import gzip
    import importlib.util

    from nexus_pretrain.evaluation.benchmarks import TASKS_DIR, humaneval_file

    def utils(folder):
        spec = importlib.util.spec_from_file_location(f"{folder}_utils", TASKS_DIR / folder / "utils.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    with gzip.open(humaneval_file(None), "rt") as f:
        problems = [json.loads(next(f)) for _ in range(3)]
    assert all(utils("humaneval").process_results(p, [p["canonical_solution"]])["pass@1"] == 1.0 for p in problems)
    mbpp = [json.loads(line) for line in (benchmark_dir / "mbpp" / "test.jsonl").read_text().splitlines()]
    assert all(utils("mbpp").process_results(d, [d["code"]])["pass@1"] == 1.0 for d in mbpp)
    assert utils("mbpp").process_results(mbpp[0], ["def add(a, b):\n  return 0"])["pass@1"] == 0.0
    doc = {"answer": "\\frac{1}{2}", "solution": "so $\\boxed{\\frac12}$"}
    math = utils("math500")
    assert math.process_results(doc, ["Final Answer: The final answer is $\\frac12$. I hope it is correct."]) == {"exact_match": 1}
    assert math.process_results(doc, ["Final Answer: The final answer is $3$. I hope it is correct."]) == {"exact_match": 0}


def test_missing_benchmark_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="gsm8k/test.jsonl"):
        render_tasks(select(["gsm8k"]), tmp_path, tmp_path / "out")


def test_unknown_benchmark_and_override_are_rejected():
    with pytest.raises(ValueError, match="unknown benchmark"):
        select(["mmlu", "hellaswag"])
    with pytest.raises(ValueError, match="eval.nope"):
        translate_overrides(["eval.nope=1"])
    assert translate_overrides(["run_dir=r", "eval.tasks=mmlu,gsm8k", "eval.limit=3"]) == [
        "r", "--tasks", "mmlu,gsm8k", "--limit", "3"]


def test_bare_model_dir_keeps_the_old_heldout_printout(tiny_hf_dir, capsys):
    cli.evaluate([str(tiny_hf_dir), "--seq-len", "32", "--sequences", "4"])
    lines = dict(line.split() for line in capsys.readouterr().out.strip().splitlines())
    assert {"val/pretrain", "ood/mean"} <= set(lines)


def test_hub_mode_swaps_in_the_standard_hub_copies(tmp_path):
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    out = render_tasks(select(None), "hub", tmp_path)
    assert {"nexus_mmlu", "nexus_gpqa_diamond", "nexus_bbh", "nexus_bbh_navigate", "nexus_humaneval"} <= set(
        TaskManager(include_path=str(out), include_defaults=False).all_tasks)
    mmlu = load_yaml(out / "mmlu" / "nexus_mmlu_anatomy.yaml", resolve_func=False)
    assert (mmlu["dataset_path"], mmlu["dataset_name"], mmlu["dataset_kwargs"]) == ("cais/mmlu", "all", {})
    assert mmlu["num_fewshot"] == 5 and mmlu["fewshot_split"] == "dev"  # the rest of our YAML still applies
    bbh = load_yaml(out / "bbh" / "nexus_bbh_navigate.yaml", resolve_func=False)
    assert (bbh["dataset_path"], bbh["dataset_name"], bbh["num_fewshot"]) == ("SaylorTwift/bbh", "navigate", 3)
    gpqa = load_yaml(out / "gpqa" / "nexus_gpqa_diamond.yaml", resolve_func=False)
    assert (gpqa["dataset_path"], gpqa["dataset_name"], gpqa["test_split"]) == ("Idavidrein/gpqa", "gpqa_diamond", "train")


def test_local_render_points_every_task_at_existing_files(benchmark_dir, tmp_path):
    from lm_eval.tasks._yaml_loader import load_yaml

    out = render_tasks(select(None), benchmark_dir, tmp_path)
    for b in BENCHMARKS.values():
        for name in b.subtasks or (b.task,):
            folder = out / b.yaml.split("/")[0]
            cfg = load_yaml(folder / f"{name}.yaml", resolve_func=False)
            files = cfg["dataset_kwargs"]["data_files"].values()
            assert files and all(Path(f).is_file() for f in files), (name, files)


def test_a_training_checkpoint_evaluates_like_its_final_export(trained_run, benchmark_dir, tmp_path):
    run_dir, _ = trained_run
    checkpoint = run_dir / "checkpoints" / "step_00000003"
    common = ["--tasks", "gsm8k", "--data-dir", str(benchmark_dir), "--no-harness", "--limit", "2"]
    cli.evaluate([str(run_dir), *common, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "ckpt.json")])
    cli.evaluate([str(run_dir), *common, "--out", str(tmp_path / "final.json")])
    ckpt, final = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("ckpt", "final"))
    assert ckpt["step"] == 3 and ckpt["checkpoint"] == str(checkpoint.resolve())
    assert ckpt["metrics"]["loss"]["GSM8k"] == pytest.approx(final["metrics"]["loss"]["GSM8k"], rel=1e-6)
    assert ckpt["metrics"]["pretrain"] == pytest.approx(final["metrics"]["pretrain"], rel=1e-6)


def test_bare_model_dir_windows_fit_a_short_context(tmp_path, capsys):
    """A model whose context is below the default 128-token window is scored in windows of its context; a
    --seq-len beyond it is one line naming the limit."""
    from nexus_pretrain.data.embedded import load_tokenizer
    from nexus_pretrain.model.hf import export_hf
    from nexus_pretrain.model.llama import Llama, ModelArgs
    from nexus_pretrain.model.presets import PRESETS

    tokenizer = load_tokenizer()
    args = ModelArgs(**{**PRESETS["tiny"], "vocab_size": -(-len(tokenizer) // 64) * 64, "max_seq_len": 64})
    model_dir = export_hf(Llama(args).eval(), tmp_path / "hf", tokenizer=tokenizer)
    cli.evaluate([str(model_dir), "--sequences", "2"])
    assert "val/pretrain" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.evaluate([str(model_dir), "--seq-len", "65", "--sequences", "2"])
    assert "--seq-len 65 exceeds the model's context of 64 tokens" in capsys.readouterr().err
