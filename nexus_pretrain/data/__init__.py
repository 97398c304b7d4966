"""Data: the embedded corpus, tokenization and token streams."""
