"""The one error type for bad user input (scenario files, traces, CLI arguments).

Its message is complete and names where the problem is (file, line, field path); the CLI prints it
and exits 2 with no traceback.
"""


class GridInputError(Exception):
    """Bad input from the user: the message says what and where."""
