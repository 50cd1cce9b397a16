"""Test helpers, imported as a package (``from tests.kits.backends import Fleet``)."""

NS = "app"
"""The namespace the shared ``kubeconfig`` fixture (tests/conftest.py) names."""
