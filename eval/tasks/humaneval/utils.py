"""HumanEval scoring: the completed program and the tests judging it run in two sandboxed processes (see
nexus_pretrain.evaluation.sandbox), never in this process."""

from nexus_pretrain.evaluation.sandbox import humaneval_task, run_task


def process_results(doc, results):
    outcome = run_task(humaneval_task(doc, results[0]), timeout=10.0)
    return {"pass@1": float(outcome.passed)}
