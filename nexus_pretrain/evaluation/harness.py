"""Run lm-evaluation-harness on an exported Hugging Face model with our local task YAMLs."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from nexus_pretrain.evaluation.benchmarks import TASKS_DIR, Benchmark, generation_lengths, is_hub, render_tasks
from nexus_pretrain.extras import check_installed, require

log = logging.getLogger(__name__)


def offline_env(data_dir: Optional[Path] = None) -> None:
    """Keep lm-eval, datasets and transformers off the network unless the caller set these already
    (or the data is to come from the hub)."""
    if is_hub(data_dir):
        return
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")


def task_manager(benchmarks: Sequence[Benchmark], data_dir: Path, work_dir: Path, tasks_dir: Path = TASKS_DIR,
                 max_gen_toks: Optional[int] = None):
    """An lm-eval TaskManager that knows our benchmarks' tasks, reading their data from ``data_dir`` and
    generating at most ``max_gen_toks`` tokens (None: the tasks' own lengths)."""
    TaskManager = require("lm_eval.tasks", "benchmark tasks need").TaskManager
    rendered = render_tasks(benchmarks, data_dir, Path(work_dir) / "tasks", tasks_dir, max_gen_toks)
    return TaskManager(include_path=str(rendered), include_defaults=False)


def model_context(model_dir: Path) -> Optional[int]:
    """The positions a Hugging Face model directory's model attends over (None if its config says not)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return config.get("max_position_embeddings")


def generation_limit(model_dir: Path, benchmarks: Sequence[Benchmark], requested: Optional[int],
                     tasks_dir: Path = TASKS_DIR) -> Optional[int]:
    """The cap on generated tokens: ``requested``, lowered to half the model's context when a task would
    generate more (the prompt keeps the other half); warns once when the context lowers it."""
    context = model_context(model_dir)
    if context is None:
        return requested
    room = context // 2
    cap = requested if requested is not None and requested <= room else None
    wanting = {n: k for n, k in generation_lengths(benchmarks, tasks_dir).items() if k > (cap or room)}
    if cap is None and wanting:
        log.warning("the model's context is %d tokens: generation capped at %d new tokens (%s); the results "
                    "JSON records lm_eval.settings.max_gen_toks=%d", context, room,
                    ", ".join(f"{n} asks for {k}" for n, k in sorted(wanting.items())), room)
        return room
    return requested


def run_harness(model_dir: Path, benchmarks: Sequence[Benchmark], data_dir: Path, limit: Optional[int] = None,
                batch_size: int = 8, device: str = "cpu", max_gen_toks: Optional[int] = None,
                tasks_dir: Path = TASKS_DIR, seed: int = 0) -> Dict[str, Any]:
    """lm_eval.simple_evaluate over the benchmarks; returns accuracies (percent) and lm-eval's raw results.

    ``limit`` caps the examples per task (per BBH subtask); ``max_gen_toks`` caps generation length
    for every generative task (for smoke tests; the YAMLs' own caps apply otherwise). Either way a task
    generates at most half the model's context (generation_limit).
    """
    lm_eval = require("lm_eval", "benchmark accuracies need")
    check_installed("accelerate", "benchmark accuracies need")  # lm-eval's HF model
    offline_env(data_dir)
    max_gen_toks = generation_limit(model_dir, benchmarks, max_gen_toks, tasks_dir)
    with tempfile.TemporaryDirectory(prefix="nexus_eval_tasks_") as work:
        manager = task_manager(benchmarks, data_dir, Path(work), tasks_dir, max_gen_toks)
        out = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={Path(model_dir).resolve()},dtype=float32",
            tasks=[b.task for b in benchmarks],
            task_manager=manager,
            limit=limit,
            batch_size=batch_size,
            device=device,
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
