"""Reproducing the paper's tables: experiment files, the table -> runs registry, the paper's numbers,
running and evaluating the runs, and comparing ours with the paper's (see scripts/reproduce.py).

Modules: files (configs/experiment/ and their sweeps), registry (which runs fill which table row),
paper (the paper's numbers from eval/tables/*.yaml), runner (train with nexus-train, evaluate with the
evaluation stage), compare (our table next to the paper's, seed statistics, same-pretraining-loss check).
"""
