"""HumanEval scoring: the completed program runs in nexus_pretrain's sandbox, never in this process."""

from nexus_pretrain.evaluation.sandbox import humaneval_program, run_program


def process_results(doc, results):
    outcome = run_program(humaneval_program(doc, results[0]), timeout=10.0)
    return {"pass@1": float(outcome.passed)}
