"""`grid loadtest`: Locust against the live grid (the locustfile and shapes live in loadtests/)."""

from grid.loadtest.cli import add_loadtest_parser

__all__ = ["add_loadtest_parser"]
