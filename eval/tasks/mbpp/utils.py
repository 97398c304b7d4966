"""MBPP scoring: setup code, the generated code and the task's asserts run in nexus_pretrain's sandbox."""

from nexus_pretrain.evaluation.sandbox import mbpp_program, run_program


def process_results(doc, results):
    outcome = run_program(mbpp_program(doc, results[0]), timeout=10.0)
    return {"pass@1": float(outcome.passed)}
