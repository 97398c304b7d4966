"""`python -m nexus_pretrain OVERRIDES...` is nexus-train (what the launchers start on every rank)."""

from nexus_pretrain.cli import train

if __name__ == "__main__":
    train()
