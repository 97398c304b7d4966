"""Reports: run comparisons from metrics.jsonl (sweep), the paper's tables from results JSONs (tables, stats),
figures (plots) and the nexus-report command line (command)."""
