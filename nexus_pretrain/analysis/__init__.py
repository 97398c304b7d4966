"""Diagnostics computed alongside training (not part of the optimization itself)."""

from nexus_pretrain.optim.grad_similarity import domain_gradient_cosine

__all__ = ["domain_gradient_cosine"]
