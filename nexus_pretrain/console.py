"""What the commands print. A command's result (its table, JSON or the paths it wrote) goes to stdout
through :func:`show`; diagnostics, progress and warnings are log records of the package's loggers
(``logging.getLogger(__name__)``), which :func:`configure_logging` shows on stderr as bare messages."""

import logging
import sys

HANDLER_NAME = "nexus_pretrain"
HYDRA_CONSOLE = "console"
"""The name Hydra's job logging gives its console handler (timestamped records on stdout)."""


class CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever sys.stderr is when a record comes (redirection and test capture
    replace it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def configure_logging() -> None:
    """Show the package's records of level INFO and up on stderr, one bare message per line. Each command
    calls it at its start; nexus-train calls it inside Hydra's app, where it replaces Hydra's console
    handler (Hydra's log file in the run directory stays)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() in (HANDLER_NAME, HYDRA_CONSOLE):
            root.removeHandler(handler)
    handler = CurrentStderr()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    logging.getLogger("nexus_pretrain").setLevel(logging.INFO)


def show(text: str = "") -> None:
    """Print a command's result on stdout."""
    print(text, flush=True)
