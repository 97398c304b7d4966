"""Console scripts: nexus-train, nexus-data, nexus-eval, nexus-report, nexus-analyze, nexus-export, nexus-bench."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from nexus_pretrain.config import register_configs
from nexus_pretrain.config_checks import validate
from nexus_pretrain.console import configure_logging, show
from nexus_pretrain.data import embedded
from nexus_pretrain.data.chinchilla import chinchilla_tokens, steps_for
from nexus_pretrain.data.domains import check_prepared
from nexus_pretrain.data.inline import prepare_sources
from nexus_pretrain.data.prepare import DEFAULT_SHARD_TOKENS, ValidationSplitWarning, prepare
from nexus_pretrain.data.tokens import domain_tokens, unigram_entropy
from nexus_pretrain.data.verify import verify_path
from nexus_pretrain.errors import ConfigError, RunError
from nexus_pretrain.extras import MissingExtra, check_run_extras
from nexus_pretrain.overrides import apply_maps, compose, replacing
from nexus_pretrain.paths import CONFIG_DIR
from nexus_pretrain.threads import set_default_threads

log = logging.getLogger(__name__)


def _one_line(error: BaseException) -> str:
    """Condense a Hydra/OmegaConf composition error into 'key: problem; fix'."""
    chain, e = [], error
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    text = "\n".join(chain)
    key = re.search(r"full_key: (\S+)", text)
    missing_key = re.search(r"Key '([^']+)' is not in struct", text) or re.search(r"Could not override '([^']+)'", text)
    if missing_key:
        name = key.group(1) if key else missing_key.group(1)
        return f"{name}: no such config key; check the spelling (`nexus-train --cfg job` lists every key)"
    option = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    if option:
        group, value = option.groups()
        choices = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        return f"{group}={value}: unknown option; choose one of {', '.join(choices)}"
    choice = re.search(r"Invalid value '([^'$]*)', expected one of \[([^\]]*)\]", text)
    if choice and key:  # an enum field (config.Choice): Hydra names the allowed values
        bad, allowed = choice.groups()
        return f"{key.group(1)}={bad} is not one of {allowed}; set {key.group(1)} to one of them"
    value_error = re.search(r"Value '([^'$]*)'[^\n]*?(could not be converted to \w+|is not a valid [^\n]*)", text)
    if value_error and key:
        bad, problem = value_error.groups()
        return f"{key.group(1)}={bad}: {problem}; give a value of the field's type"
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"{key.group(1) + ': ' if key else ''}{first}"


def check_overrides(overrides: List[str]) -> None:
    """Compose and validate the config the overrides give, and check that its domains are prepared; raise
    ConfigError with one line if bad."""
    plain = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    try:
        cfg = compose(plain)
    except ConfigError:
        raise
    except Exception as error:  # Hydra raises several exception types for bad overrides
        raise ConfigError(_one_line(error)) from None
    validate(cfg, world_size=int(os.environ.get("WORLD_SIZE", 1)))
    check_prepared(cfg.data)
    check_run_extras(cfg)


def _train_app(cfg) -> None:
    from nexus_pretrain.train.cooldown import run_branches  # heavy: torch; override checks stay torch-free
    from nexus_pretrain.train.trainer import Trainer  # heavy: torch; override checks stay torch-free

    configure_logging()  # again: Hydra has just set up its own
    run_config = OmegaConf.to_object(cfg)
    # Hydra's output dir is trainer.run_dir for a single run and a per-job subfolder in a sweep (-m).
    run_config.trainer.run_dir = HydraConfig.get().runtime.output_dir
    try:
        check_prepared(apply_maps(run_config, HydraConfig.get().overrides.task).data)
        check_run_extras(run_config)
        trainer = Trainer(run_config)
    except ConfigError as error:
        log.error(f"config error: {error}")
        sys.exit(2)
    except (ValueError, RunError) as error:  # bad data or init_from weights found at start-up: one line
        log.error(f"error: {error}")
        sys.exit(2)
    is_main, branches = trainer.is_main, []
    try:
        try:
            final = trainer.fit()
        finally:
            trainer.close()
        if not final.get("preempted") and trainer.step == run_config.trainer.max_steps:
            branches = run_branches(run_config, Trainer, is_main)  # trainer.cooldown_from, if any
    except RunError as error:  # a refused resume or fresh start, a damaged checkpoint, a full disk: one line
        log.error(f"error: {error}")
        sys.exit(2)
    if not is_main:
        return
    if final.get("preempted"):
        show(f"stopped by a signal at step {trainer.step}; checkpoint saved in {trainer.run_dir}/checkpoints; "
              "continue with trainer.resume=auto")
        return
    summary = ", ".join(f"{k}={v:.4f}" for k, v in final.items() if k.startswith(("val/pretrain", "ood/mean", "loss")))
    show(f"finished step {trainer.step} in {trainer.run_dir}: {summary}")
    for branch in branches:
        show(f"cooldown branch: {branch}")


def default_cuda_allocator() -> None:
    """Expandable segments for PyTorch's CUDA caching allocator unless PYTORCH_CUDA_ALLOC_CONF says
    otherwise; set before torch touches the GPU. Fragmentation left 6.45 GiB reserved but unusable and
    ran 1B with 16-sequence micro-batches out of memory on an H100; with expandable segments it fits
    (73.1 GiB) and reaches 58.3% MFU (README, Performance). torchtitan's launcher sets the same."""
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


def train(argv: Optional[List[str]] = None) -> None:
    """nexus-train: Hydra entry point; bad overrides fail fast with one line."""
    configure_logging()
    default_cuda_allocator()
    set_default_threads()

    argv = sys.argv[1:] if argv is None else argv
    try:
        check_run_extras(None, argv)
    except ConfigError as error:
        log.error(f"config error: {error}")
        sys.exit(2)
    if not any(a.startswith("-") for a in argv):  # Hydra flags (--help, -m, --cfg) go straight to Hydra
        try:
            check_overrides(argv)
        except ConfigError as error:
            log.error(f"config error: {error}")
            sys.exit(2)
    register_configs()
    sys.argv = [sys.argv[0], *replacing(argv)]  # a dict for data.domains is the whole map (overrides.py)
    hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")(_train_app)()


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description)


def data(argv: Optional[List[str]] = None) -> None:
    """nexus-data: prepare and inspect the token data the trainer reads."""
    parser = _parser("nexus-data", "Prepare and inspect training data. Subcommands: stats (per-domain token counts "
                                   "and unigram entropy of the embedded corpus), prepare (tokenize recipes into "
                                   "shards), verify (shards against their manifests), chinchilla (token and "
                                   "step budgets).")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stats", help="tokens, documents and unigram entropy per embedded domain")
    prep = sub.add_parser("prepare", help="tokenize your files (DOMAIN=FILES) or recipes (data_pipelines/recipes/"
                                          "*.yaml) into token shards")
    prep.add_argument("recipes", nargs="+", metavar="DOMAIN=FILES|RECIPE",
                      help="a domain of your naming and its files (comma-separated .jsonl/.json/.parquet/.txt "
                           "files, folders or globs), e.g. cooking=my/cooking.jsonl; or a recipe YAML file")
    prep.add_argument("--ood", action="append", default=[], metavar="DOMAIN[,DOMAIN]",
                      help="DOMAIN=FILES domains that are evaluation-only (OOD loss, never trained on)")
    prep.add_argument("--text-field", default="text", help="DOMAIN=FILES jsonl/parquet: the column holding the text")
    prep.add_argument("--val-fraction", type=float, default=0.05,
                      help="DOMAIN=FILES: share of documents held out for validation")
    prep.add_argument("--sample-by", default="document", choices=("document", "paragraph", "line"),
                      help="DOMAIN=FILES txt files: one document per file, paragraph or line")
    prep.add_argument("--out", type=Path, required=True, help="root folder of the prepared domains (data.path)")
    prep.add_argument("--tokenizer", default=None, help="HF tokenizer dir or hub name (default: the embedded one)")
    prep.add_argument("--workers", type=int, default=1, help="tokenizer processes (1: one process whose "
                      "encoder uses every core; measured as fast as 2 processes on 2 cores)")
    prep.add_argument("--shard-tokens", type=int, default=None, help="tokens per shard (default 2**27)")
    prep.add_argument("--encoder", choices=("hf", "tiktoken"), default="hf",
                      help="hf: the tokenizer's own encoder; tiktoken: the same byte-level BPE run by tiktoken, "
                           "~4x faster (checked against hf on each recipe's first documents)")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")
    ver = sub.add_parser("verify", help="check prepared shards against their manifests: sizes, sha256, token ids")
    ver.add_argument("path", type=Path, help="the --out folder of nexus-data prepare (data.path), or one domain's folder")
    chin = sub.add_parser("chinchilla", help="Chinchilla token budget and optimizer steps for a model preset")
    chin.add_argument("--preset", required=True, help="model preset, e.g. llama_1b")
    chin.add_argument("--multiplier", type=float, default=1.0, help="times the 20 tokens/parameter budget")
    chin.add_argument("--global-batch", type=int, required=True, help="sequences per optimizer step")
    chin.add_argument("--seq-len", type=int, default=2048, help="tokens per sequence")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        if args.command == "stats":
            _data_stats()
        elif args.command == "prepare":
            _data_prepare(args)
        elif args.command == "verify":
            _data_verify(args.path)
        else:
            tokens = chinchilla_tokens(args.preset, args.multiplier)
            steps = steps_for(tokens, args.global_batch, args.seq_len)
            show(f"preset={args.preset} multiplier={args.multiplier:g}: tokens={tokens} "
                  f"steps={steps} (global_batch={args.global_batch}, seq_len={args.seq_len})")
    except ValueError as error:
        log.error(f"error: {error}")
        sys.exit(2)


def _data_verify(path: Path) -> None:
    passed, problems = verify_path(path)
    for line in passed:
        show(f"ok  {line}")
    for line in problems:
        log.error(f"error: {line}")
    if problems:
        sys.exit(1)


def _prepare_sources(args: argparse.Namespace) -> list:
    """nexus-data prepare's recipes: recipe files as they are, DOMAIN=FILES built from the options."""
    ood = [name for names in args.ood for name in names.split(",") if name]
    return prepare_sources(args.recipes, args.text_field, args.val_fraction, ood, args.sample_by)


def _data_prepare(args: argparse.Namespace) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ValidationSplitWarning)
        summaries = prepare(_prepare_sources(args), args.out, tokenizer=args.tokenizer, workers=args.workers,
                            shard_tokens=args.shard_tokens or DEFAULT_SHARD_TOKENS, progress=not args.no_progress,
                            encoder=args.encoder)
    for warning in caught:
        if issubclass(warning.category, ValidationSplitWarning):
            log.warning(f"warning: {warning.message}")
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    total_tokens = sum(s["tokens"] for s in summaries)
    total_seconds = sum(s["seconds"] for s in summaries)
    for s in summaries:
        state = "up to date, skipped" if s["skipped"] else \
            f"{s['tokens']} tokens in {s['seconds']:.2f}s ({s['tokens'] / max(s['seconds'], 1e-9):,.0f} tokens/s)"
        show(f"{s['domain']:<12} {state}")
    if total_seconds > 0:
        show(f"{'total':<12} {total_tokens} tokens in {total_seconds:.2f}s "
              f"({total_tokens / total_seconds:,.0f} tokens/s) -> {args.out}")


def _data_stats() -> None:
    tokenizer = embedded.load_tokenizer()
    show(f"{'domain':<8} {'split':<6} {'documents':>9} {'tokens':>10} {'unigram H (nats)':>17}")
    for domain in embedded.DOMAINS:
        splits = ("val",) if domain in embedded.OOD_DOMAINS else ("train", "val")
        for split in splits:
            tokens = domain_tokens(domain, split, tokenizer=tokenizer)
            docs = len(embedded.load_documents(domain)) if split == splits[0] else ""
            show(f"{domain:<8} {split:<6} {docs!s:>9} {len(tokens):>10} {unigram_entropy(tokens):>17.3f}")


def evaluate(argv: Optional[List[str]] = None) -> None:
    """nexus-eval: benchmarks, downstream and held-out losses of a checkpoint (see nexus-eval --help)."""
    set_default_threads()
    from nexus_pretrain.eval_command import main  # heavy: torch and lm-eval, only for nexus-eval

    _run(main, argv)


def report(argv: Optional[List[str]] = None) -> None:
    """nexus-report: compare runs (run directories) or build the paper's tables (results JSONs)."""
    from nexus_pretrain.report.command import main  # heavy: the report stack, only for nexus-report

    _run(main, argv)


def export(argv: Optional[List[str]] = None) -> None:
    """nexus-export: a checkpoint of any backend to a Hugging Face model directory."""
    parser = _parser("nexus-export", "Write a run checkpoint (RUN_DIR/checkpoints/step_XXXXXXXX, from any backend "
                                     "and world size) as a Hugging Face model directory with its tokenizer.")
    parser.add_argument("checkpoint", type=Path, help="checkpoint directory (or a run directory: its newest one)")
    parser.add_argument("out_dir", type=Path, help="directory to write config.json, model.safetensors, tokenizer")
    args = parser.parse_args(argv)
    configure_logging()
    from nexus_pretrain.train import checkpoint as ckpt  # heavy: torch, only for nexus-export
    from nexus_pretrain.train.export import export_checkpoint  # heavy: torch, only for nexus-export

    checkpoint = args.checkpoint
    try:
        if not (checkpoint / ckpt.META_FILE).is_file() and not ckpt.is_sealed(checkpoint):
            checkpoint = ckpt.latest_valid_checkpoint(checkpoint)  # damaged newer ones skipped with a warning
            if checkpoint is None:
                log.error(f"error: {args.checkpoint} is neither a complete checkpoint nor a run directory with one")
                sys.exit(2)
        show(f"exported {checkpoint} -> {export_checkpoint(checkpoint, args.out_dir)}")
    except ckpt.CheckpointError as error:
        log.error(f"error: {error}")
        sys.exit(2)


def analyze(argv: Optional[List[str]] = None) -> None:
    """nexus-analyze: the paper's Sec. 5.1 analyses (gradient cosine, parameter closeness, loss landscape, Fig. 7a)."""
    set_default_threads()
    from nexus_pretrain.analysis.command import main  # heavy: torch, only for nexus-analyze

    _run(main, argv)


def _run(main, argv: Optional[List[str]]) -> None:
    """A command's main; a missing optional dependency ends it with one line naming the extra to install."""
    configure_logging()
    try:
        main(argv)
    except MissingExtra as error:
        log.error(f"error: {error}")
        sys.exit(2)


def bench(argv: Optional[List[str]] = None) -> None:
    """nexus-bench: AdamW vs Nexus step time and memory on one device."""
    configure_logging()
    default_cuda_allocator()
    from nexus_pretrain.bench import main as bench_main  # heavy: torch; set the allocator before it loads

    bench_main(argv)
