"""Evaluation of exported checkpoints: held-out pretrain/OOD losses (heldout), lm-eval benchmarks over our
task YAMLs in eval/tasks (benchmarks, harness), gold-answer downstream losses (downstream_loss), sandboxed
code execution (sandbox), the results JSON (results) and the stage tying them together (stage). nexus-eval's
command line is nexus_pretrain.eval_command."""
