"""The ``dnsbalance`` command (``main``): the CLI apart from the library it calls."""

from .main import main

__all__ = ["main"]
