"""A run directory's files as every layer reads them: metrics.jsonl (metrics_file), the run's names and
labels from its config.yaml and Hydra's record (run_name), and environment.jsonl, what each start ran on
(environment). Training writes these files; evaluation, reports, analyses and experiments read them, so
this package imports none of those."""
