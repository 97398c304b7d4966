"""Evaluation: held-out and OOD losses (lm-eval benchmarks arrive with the evaluation issue)."""
