"""GPQA documents: the four answers shuffled with a per-question seed, and the gold letter."""

import hashlib
import random


def _clean(text):
    if text is None:
        return " "
    return text.strip().replace(" [title]", ". ").replace("  ", " ")


def _shuffle(doc):
    choices = [_clean(doc[f"Incorrect Answer {i}"]) for i in (1, 2, 3)] + [_clean(doc["Correct Answer"])]
    seed = int(hashlib.sha256(doc["Question"].encode()).hexdigest()[:16], 16)
    random.Random(seed).shuffle(choices)
    gold = choices.index(_clean(doc["Correct Answer"]))
    return {"choice1": choices[0], "choice2": choices[1], "choice3": choices[2], "choice4": choices[3],
            "answer": f"({chr(65 + gold)})", "correct_answer": _clean(doc["Correct Answer"])}


def process_docs(dataset):
    return dataset.map(_shuffle)
