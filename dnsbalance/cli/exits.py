"""Exit codes of the ``dnsbalance`` command: 0 ok, 1 failed, 2 refused or bad usage."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
