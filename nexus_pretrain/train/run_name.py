"""Run labels under their former name; they live in nexus_pretrain.rundir.run_name."""

from nexus_pretrain.rundir.run_name import optimizer_label  # noqa: F401
