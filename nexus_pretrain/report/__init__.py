"""Reports comparing runs (the paper's full tables arrive with the evaluation issue)."""
