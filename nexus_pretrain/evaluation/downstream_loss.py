"""Downstream loss: mean per-token negative log-likelihood of each benchmark's gold answer given its prompt.

The paper's "Loss" rows. Prompts and documents come from lm-eval's own Task objects built from our
task YAMLs (same processing, e.g. GPQA's choice shuffle), so the loss is measured on exactly the
questions the accuracy is. Per benchmark:

- context: the task's zero-shot prompt ``doc_to_text(doc)`` (no few-shot exemplars, no description),
  preceded by the tokenizer's BOS token (the document separator the model was pretrained with);
- continuation: the task's target delimiter plus the gold text named by ``metadata.downstream_gold``
  in the task YAML: a document field (``answer``, ``solution``, ``canonical_solution``, ``code``,
  ``target``, ``correct_answer``) or ``choice_text`` (MMLU: ``choices[answer]``);
- loss: sum of the continuation tokens' NLL over all examples divided by their number of tokens.

Tokenization follows lm-eval: continuation tokens are those of ``tok(context + continuation)`` past
``len(tok(context))``. A sequence longer than the model's context keeps its continuation and loses
context from the left; a continuation longer than the whole window is cut at its end.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from nexus_pretrain.evaluation.benchmarks import TASKS_DIR
from nexus_pretrain.evaluation.harness import offline_env, task_manager
from nexus_pretrain.model.hf import import_hf


@dataclass(frozen=True)
class GoldLoss:
    """Summed NLL and token count of one benchmark's gold continuations."""
    nll: float
    tokens: int
    examples: int

    @property
    def loss(self) -> float:
        return self.nll / self.tokens if self.tokens else float("nan")


def gold_continuation(task: Any, doc: Dict[str, Any]) -> str:
    """The gold answer text a task's YAML names in ``metadata.downstream_gold``, with the target delimiter."""
    field = (task.config.metadata or {}).get("downstream_gold")
    if field is None:
        raise ValueError(f"task {task.config.task}: its YAML sets no metadata.downstream_gold")
    if field == "choice_text":
        text = doc["choices"][int(doc["answer"])]
    elif field in doc:
        text = doc[field]
    else:
        raise ValueError(f"task {task.config.task}: metadata.downstream_gold={field!r} is not a field of its documents")
    return task.config.target_delimiter + str(text)


def gold_pairs(task: Any, limit: Optional[int] = None) -> List[Tuple[str, str]]:
    """(prompt, gold continuation) for the first ``limit`` evaluation documents of an lm-eval task."""
    docs = task.test_docs() if task.has_test_docs() else task.validation_docs()
    pairs = []
    for i, doc in enumerate(docs):
        if limit is not None and i >= limit:
            break
        pairs.append((task.doc_to_text(doc), gold_continuation(task, doc)))
    return pairs


def encode_pair(tokenizer: Any, context: str, continuation: str) -> Tuple[List[int], List[int]]:
    """Context and continuation token ids the way lm-eval splits them (trailing spaces go to the continuation)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    return ctx, whole[len(ctx):]


def _window(prefix: List[int], ctx: List[int], cont: List[int], max_len: int) -> Tuple[List[int], int]:
    """Token ids fed to the model (at most max_len + 1 incl. the last target) and how many end tokens are scored."""
    cont = cont[:max_len]
    tokens = (prefix + ctx + cont)[-(max_len + 1):]
    return tokens, len(cont)


def sequences_nll(model: torch.nn.Module, batch: Sequence[Tuple[List[int], int]],
                  device: Any = "cpu") -> Tuple[torch.Tensor, int]:
    """Summed NLL (a 0-d tensor, differentiable) of the last ``n`` tokens of each (tokens, n) in one
    padded batch, and their count."""
    width = max(len(t) for t, _ in batch) - 1
    inputs = torch.zeros(len(batch), width, dtype=torch.long)
    targets = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.bool)
    for row, (tokens, n) in enumerate(batch):
        t = torch.tensor(tokens, dtype=torch.long)
        inputs[row, :len(t) - 1], targets[row, :len(t) - 1] = t[:-1], t[1:]
        mask[row, len(t) - 1 - n:len(t) - 1] = True
    logits = model(inputs.to(device)).float()
    nll = F.cross_entropy(logits.flatten(0, 1), targets.to(device).flatten(), reduction="none").view_as(mask)
    return nll[mask.to(device)].sum(), int(mask.sum())


@torch.no_grad()
def continuation_nll(model: torch.nn.Module, sequences: Sequence[Tuple[List[int], int]], max_len: int,
                     batch_size: int = 8, device: str = "cpu") -> Tuple[float, int]:
    """Summed NLL of the last ``n`` tokens of each token sequence given the ones before, and their count."""
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]))
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        nll, n = sequences_nll(model, [sequences[i] for i in order[start:start + batch_size]], device)
        total += nll.item()
        count += n
    return total, count


def gold_sequences(tokenizer: Any, tasks: Iterable[Any], max_len: int,
                   limit: Optional[int] = None) -> List[Tuple[List[int], int]]:
    """(token ids, number of scored end tokens) of each gold answer after its prompt, over lm-eval tasks."""
    prefix = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    sequences = []
    for task in tasks:
        for context, continuation in gold_pairs(task, limit):
            ctx, cont = encode_pair(tokenizer, context, continuation)
            sequences.append(_window(prefix, ctx, cont, max_len))
    return sequences


def downstream_losses(model: torch.nn.Module, tokenizer: Any, tasks: Dict[str, Iterable[Any]], max_len: int,
                      limit: Optional[int] = None, batch_size: int = 8, device: str = "cpu") -> Dict[str, GoldLoss]:
    """GoldLoss per benchmark column; ``tasks`` maps a column to its lm-eval Task objects (BBH: 27 subtasks)."""
    was_training = model.training
    model.eval()
    out = {}
    for column, column_tasks in tasks.items():
        sequences = gold_sequences(tokenizer, column_tasks, max_len, limit)
        nll, tokens = continuation_nll(model, sequences, max_len, batch_size, device)
        out[column] = GoldLoss(nll, tokens, len(sequences))
    model.train(was_training)
    return out


def load_tasks(benchmarks: Sequence[Any], manager: Any) -> Dict[str, List[Any]]:
    """lm-eval Task objects per benchmark column, built by ``manager`` (a TaskManager over our YAMLs)."""
    out = {}
    for b in benchmarks:
        names = list(b.subtasks) or [b.task]
        built = manager.load(names)["tasks"]
        out[b.column] = [built[n] for n in names]
    return out


def model_downstream_losses(model_dir: Path, benchmarks: Sequence[Any], data_dir: Path, limit: Optional[int] = None,
                            batch_size: int = 8, device: str = "cpu", tasks_dir: Optional[Path] = None
                            ) -> Dict[str, GoldLoss]:
    """downstream_losses of an exported model directory, loaded with our own Llama (import_hf)."""
    from transformers import AutoTokenizer  # heavy: transformers


    offline_env(data_dir)
    model = import_hf(model_dir).to(device)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    with tempfile.TemporaryDirectory(prefix="nexus_eval_tasks_") as work:
        tasks = load_tasks(benchmarks, task_manager(benchmarks, data_dir, Path(work), tasks_dir or TASKS_DIR))
        return downstream_losses(model, tokenizer, tasks, model.args.max_seq_len, limit, batch_size, device)
