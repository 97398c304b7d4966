"""Deterministic generator of the embedded `math` domain: exercises with worked solutions.

Every document is one exercise. Each arithmetic step in a solution is written as an explicit
equality such as ``3 * 12 = 36`` and the document ends with ``The answer is N.``, so the
corpus can be machine-checked (see tests/data/test_embedded.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .drills import DRILLS
from .numbers import Exercise
from .word_problems import WORD_PROBLEMS

DEFAULT_SEED = 20240611
DEFAULT_COUNT = 6000

Template = Callable[[random.Random], Exercise]
TEMPLATES: tuple[Template, ...] = WORD_PROBLEMS + DRILLS


def generate_math_documents(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[str]:
    """The first `count` math documents of the stream determined by `seed` (a prefix-stable stream)."""
    rng = random.Random(seed)
    documents = []
    for _ in range(count):
        exercise = rng.choice(TEMPLATES)(rng)
        documents.append(exercise.render(rng))
    return documents


__all__ = ["DEFAULT_COUNT", "DEFAULT_SEED", "TEMPLATES", "Exercise", "generate_math_documents"]
