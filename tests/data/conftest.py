"""Small generated corpora shaped like the hub datasets the shipped recipes read."""

import json
import random
from pathlib import Path

import pytest

WORDS = ["the", "sum", "of", "integral", "∑", "def", "return", "x²", "café", "数据", "import", "numpy", "proof",
         "lemma", "\n", "    ", "{", "}", "=", "+", "1", "42", "π", "tab\t", "emoji🙂"]


def make_documents(n: int, seed: int = 0, min_words: int = 5, max_words: int = 60) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))) + f" doc{seed}-{i}"
            for i in range(n)]


def write_recipe(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def fineweb_like(tmp_path) -> tuple[Path, list[str]]:
    """Two jsonl files with FineWeb-Edu's fields (text, id, url, score) and a recipe reading them."""
    docs = make_documents(120, seed=1)
    folder = tmp_path / "fineweb"
    folder.mkdir()
    for part, chunk in enumerate([docs[:70], docs[70:]]):
        with open(folder / f"part{part}.jsonl", "w", encoding="utf-8") as f:
            for i, text in enumerate(chunk):
                f.write(json.dumps({"text": text, "id": f"<urn:{part}-{i}>", "url": "https://x.org", "score": 3.1},
                                   ensure_ascii=False) + "\n")
    recipe = write_recipe(tmp_path / "web.yaml", "domain: web\nsource:\n  local: {paths: ['fineweb/*.jsonl'], "
                                                 "format: jsonl, text_field: text}\nval_fraction: 0.1\n")
    return recipe, docs
