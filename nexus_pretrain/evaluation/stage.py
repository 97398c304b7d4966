"""The evaluation stage: held-out losses, lm-eval benchmarks and downstream losses of one checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from nexus_pretrain.evaluation.benchmarks import COLUMNS, TASKS_DIR, select
from nexus_pretrain.evaluation.downstream_loss import model_downstream_losses
from nexus_pretrain.evaluation.harness import run_harness
from nexus_pretrain.evaluation.heldout import heldout_losses, run_heldout_losses
from nexus_pretrain.evaluation.results import build_results, run_metadata, task_hashes
from nexus_pretrain.evaluation.sandbox import isolation


@dataclass
class EvalSettings:
    """What to evaluate and how (nexus-eval's options)."""
    tasks: List[str] = field(default_factory=list)  # benchmark names; empty = all eight
    data_dir: Path = Path("data/benchmarks")
    limit: Optional[int] = None
    batch_size: int = 8
    device: str = "cpu"
    max_gen_toks: Optional[int] = None
    harness: bool = True  # accuracies through lm-eval
    downstream_loss: bool = True
    heldout: bool = True
    seed: int = 0
    tasks_dir: Path = TASKS_DIR


def resolve_dirs(path: Path) -> tuple:
    """(run_dir or None, model_dir) from a run directory (with hf/) or an HF model directory."""
    path = Path(path)
    if (path / "config.yaml").is_file():
        return path, path / "hf"
    if (path / "config.json").is_file():
        return None, path
    raise FileNotFoundError(f"{path}: neither a run directory (config.yaml) nor a Hugging Face model directory "
                            "(config.json)")


def evaluate_checkpoint(path: Path, settings: EvalSettings, step: Optional[int] = None,
                        model_dir: Optional[Path] = None, tag: Optional[str] = None) -> Dict[str, Any]:
    """The results document of one checkpoint (see results.build_results)."""
    run_dir, default_model = resolve_dirs(path)
    model_dir = Path(model_dir) if model_dir is not None else default_model
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir / 'config.json'} not found; export the run's model first "
                                "(trainer.export_hf)")
    benchmarks = select(settings.tasks)
    hashes = task_hashes(benchmarks, settings.data_dir, settings.tasks_dir)  # also fails fast on missing data
    meta = {**run_metadata(run_dir, step), "tag": tag}
    heldout: Dict[str, float] = {}
    if settings.heldout:
        heldout = (run_heldout_losses(run_dir, model_dir, device=settings.device) if run_dir
                   else heldout_losses(model_dir))
    harness = None
    if settings.harness:
        harness = run_harness(model_dir, benchmarks, settings.data_dir, settings.limit, settings.batch_size,
                              settings.device, settings.max_gen_toks, settings.tasks_dir, settings.seed)
    losses = {}
    if settings.downstream_loss:
        losses = model_downstream_losses(model_dir, benchmarks, settings.data_dir, settings.limit,
                                         settings.batch_size, settings.device, settings.tasks_dir)
    columns = [c for c in COLUMNS if c in {b.column for b in benchmarks}]
    return build_results(meta, heldout, harness["accuracy"] if harness else {}, losses, columns, harness, hashes,
                         isolation() if {"humaneval", "mbpp"} & {b.name for b in benchmarks} else {}, model_dir)
