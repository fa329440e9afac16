"""The one error type for bad user input (scenario files, traces, CLI arguments).

Its message is complete and names where the problem is (file, line, field path); the CLI prints it
and exits 2 with no traceback.
"""


class GridInputError(Exception):
    """Bad input from the user: the message says what and where."""


class GridWarning(UserWarning):
    """Input that is accepted but looks wrong or loses something (a trace's implausible time unit, its
    failed rows): the CLI prints it as one `grid: warning:` line and goes on."""


def show_grid_warnings() -> None:
    """Print GridWarnings as `grid: warning: …` lines on stderr, each once (for the CLI)."""
    import sys
    import warnings

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - stdlib hook
        if issubclass(category, GridWarning):
            print(f"grid: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("once", GridWarning)
