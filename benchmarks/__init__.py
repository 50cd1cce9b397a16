"""dnsbalance's benchmarks: run with ``python -m benchmarks [--quick] [SUITE ...]``.

Numbers come from one run on this machine, with real servers on loopback; compare
ratios measured side by side in the same run, not absolute numbers across runs.
"""
