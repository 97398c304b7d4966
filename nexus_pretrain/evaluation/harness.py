"""Run lm-evaluation-harness on an exported Hugging Face model with our local task YAMLs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from nexus_pretrain.evaluation.benchmarks import TASKS_DIR, Benchmark, is_hub, render_tasks


def offline_env(data_dir: Optional[Path] = None) -> None:
    """Keep lm-eval, datasets and transformers off the network unless the caller set these already
    (or the data is to come from the hub)."""
    if is_hub(data_dir):
        return
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")


def task_manager(benchmarks: Sequence[Benchmark], data_dir: Path, work_dir: Path, tasks_dir: Path = TASKS_DIR):
    """An lm-eval TaskManager that knows our benchmarks' tasks, reading their data from ``data_dir``."""
    from lm_eval.tasks import TaskManager

    rendered = render_tasks(benchmarks, data_dir, Path(work_dir) / "tasks", tasks_dir)
    return TaskManager(include_path=str(rendered), include_defaults=False)


def run_harness(model_dir: Path, benchmarks: Sequence[Benchmark], data_dir: Path, limit: Optional[int] = None,
                batch_size: int = 8, device: str = "cpu", max_gen_toks: Optional[int] = None,
                tasks_dir: Path = TASKS_DIR, seed: int = 0) -> Dict[str, Any]:
    """lm_eval.simple_evaluate over the benchmarks; returns accuracies (percent) and lm-eval's raw results.

    ``limit`` caps the examples per task (per BBH subtask); ``max_gen_toks`` caps generation length
    for every generative task (for smoke tests; the YAMLs' own caps apply otherwise).
    """
    import lm_eval

    offline_env(data_dir)
    with tempfile.TemporaryDirectory(prefix="nexus_eval_tasks_") as work:
        manager = task_manager(benchmarks, data_dir, Path(work), tasks_dir)
        out = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={Path(model_dir).resolve()},dtype=float32",
            tasks=[b.task for b in benchmarks],
            task_manager=manager,
            limit=limit,
            batch_size=batch_size,
            device=device,
            gen_kwargs=f"max_gen_toks={max_gen_toks}" if max_gen_toks else None,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
            log_samples=False,
        )
    accuracy: Dict[str, float] = {}
    for b in benchmarks:
        results = out["results"].get(b.task, {})
        if b.metric not in results:
            raise ValueError(f"lm-eval returned no {b.metric!r} for task {b.task}; got {sorted(results)}")
        accuracy[b.column] = 100.0 * float(results[b.metric])
    return {"accuracy": accuracy, "results": out["results"], "n_samples": out.get("n-samples", {}),
            "versions": out.get("versions", {}), "lm_eval_version": lm_eval.__version__,
            "config": {"limit": limit, "batch_size": batch_size, "device": device, "max_gen_toks": max_gen_toks,
                       "seed": seed}}
