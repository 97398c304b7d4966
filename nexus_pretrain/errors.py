"""The error a bad configuration raises, in a module of its own so that any subpackage can raise it
without importing the config (which imports some of them)."""


class ConfigError(ValueError):
    """A bad configuration value; the message names the key and how to fix it."""
