"""The embedded demo: prepares the shipped corpus into token shards with the real data pipeline
(`nexus-data prepare` of data_pipelines/recipes/embedded_*.yaml, skipped when already up to date), trains
the tiny model on those shards with AdamW and with Nexus, then prints their pretrain and OOD losses side
by side. ``python -m nexus_pretrain.demo [overrides]``."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from nexus_pretrain.config import TrainConfig, register_configs
from nexus_pretrain.paths import CONFIG_DIR, REPO_ROOT

RUNS = {"adamw": ["optim=adamw"], "nexus": ["optim=nexus"]}
DEMO_ROOT = Path("runs/demo")


def demo_recipes() -> List[Path]:
    """The recipes of the shipped corpus: data_pipelines/recipes/embedded_*.yaml."""
    return sorted((REPO_ROOT / "data_pipelines" / "recipes").glob("embedded_*.yaml"))


def prepare_demo_data(out: Path, recipes: Optional[Sequence[Path]] = None, workers: int = 1) -> List[Dict[str, Any]]:
    """`nexus-data prepare` of the embedded recipes into `out` (incremental: domains already prepared there
    are skipped); one summary per recipe, each with the domain's prepared train/val tokens added.

    One worker: the encoder's Rust thread pool already uses every core, and no process is spawned.
    """
    from nexus_pretrain.data import store
    from nexus_pretrain.data.prepare import prepare

    summaries = prepare(list(recipes or demo_recipes()), out, workers=workers, progress=False)
    for summary in summaries:
        splits = store.complete_manifest(out, summary["domain"])["splits"]
        summary.update({f"{split}_tokens": splits[split]["tokens"] for split in store.SPLITS})
    return summaries


def describe_prepared(summaries: List[Dict[str, Any]], out: Path) -> str:
    """One line: tokens per domain under `out` and this run's tokenization speed (or that it was skipped)."""
    domains = ", ".join(f"{s['domain']} {s['train_tokens'] + s['val_tokens']:,}" for s in summaries)
    tokens, seconds = sum(s["tokens"] for s in summaries), sum(s["seconds"] for s in summaries)
    if tokens == 0:
        how = "already prepared, skipped"
    else:
        how = f"{tokens:,} tokens in {seconds:.1f}s = {tokens / max(seconds, 1e-9):,.0f} tokens/s"
    return f"Data: {out} (nexus-data prepare, embedded recipes) -- tokens per domain: {domains}; {how}"


def compose_config(overrides: List[str]) -> TrainConfig:
    """The train config Hydra composes from configs/ with these overrides."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose("train", overrides=overrides))


def main(argv: List[str] | None = None) -> Dict[str, Dict[str, float]]:
    """Run both trainings (extra Hydra overrides apply to both) and print the comparison."""
    from nexus_pretrain.data.tokens import unigram_entropy
    from nexus_pretrain.report.sweep import compare_runs
    from nexus_pretrain.train.trainer import Trainer

    extra = sys.argv[1:] if argv is None else argv
    root = DEMO_ROOT
    results, run_dirs, started = {}, [], time.perf_counter()
    data_dir = root / "data"
    prepared = describe_prepared(prepare_demo_data(data_dir), data_dir)
    print(prepared, flush=True)
    for name, overrides in RUNS.items():
        run_dir = root / name
        if run_dir.exists():  # the demo's own run of an earlier invocation: replaced, as the demo always starts over
            shutil.rmtree(run_dir)
        cfg = compose_config([*overrides, "data=shards", f"data.path={data_dir}", f"trainer.run_dir={run_dir}",
                              "logging.progress_bar=false", "trainer.checkpoint_every=0", *extra])
        print(f"== {name}: {cfg.trainer.max_steps} steps of {cfg.trainer.global_batch}x{cfg.data.seq_len} tokens "
              f"({cfg.optim.name}, lr {cfg.optim.lr}) -> {run_dir}", flush=True)
        t0 = time.perf_counter()
        trainer = Trainer(cfg)
        first = trainer.evaluate()
        results[name] = {"initial/val/pretrain": first["val/pretrain"], **trainer.fit()}
        results[name]["seconds"] = time.perf_counter() - t0
        run_dirs.append(run_dir)
        r = results[name]
        print(f"   pretrain loss {r['initial/val/pretrain']:.3f} -> {r['val/pretrain']:.3f}, OOD {r['ood/mean']:.3f}, "
              f"train loss {r['loss']:.3f}, {r['seconds']:.0f}s", flush=True)
    train_tokens = [trainer.data.sampler.streams[d] for d in trainer.data.sampler.domains]
    entropy = sum(unigram_entropy(t) * trainer.data.sampler.weights[d]
                  for d, t in zip(trainer.data.sampler.domains, train_tokens))
    print(f"\nPer-domain unigram entropy, mixture-weighted: {entropy:.3f} nats/token (the loss of a model that "
          f"knows each domain's token frequencies and nothing else)\n")
    print(compare_runs(run_dirs, baseline=str(run_dirs[0])))
    print(f"\n{prepared}")
    print(f"\nDemo finished in {time.perf_counter() - started:.0f}s. Metrics: {root}/*/metrics.jsonl; "
          f"exported models: {root}/*/hf")
    return results


if __name__ == "__main__":
    main()
