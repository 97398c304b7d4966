"""MBPP scoring: setup and generated code run in one sandboxed process, the task's asserts in another that
calls it (see nexus_pretrain.evaluation.sandbox)."""

from nexus_pretrain.evaluation.sandbox import mbpp_task, run_task


def process_results(doc, results):
    outcome = run_task(mbpp_task(doc, results[0]), timeout=10.0)
    return {"pass@1": float(outcome.passed)}
