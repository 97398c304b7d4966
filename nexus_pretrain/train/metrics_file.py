"""The metrics.jsonl reader under its former name; it lives in nexus_pretrain.rundir.metrics_file."""

from nexus_pretrain.rundir.metrics_file import METRICS_FILE, read_metrics  # noqa: F401
