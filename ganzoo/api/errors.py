"""The one exception type the CLI turns into a one-line message and exit code 2, and warnings, said on stderr."""

import sys


class GanzooError(Exception):
    """A problem with the user's input (config, data, checkpoint, plugin name): shown as one line, exit code 2."""


def warn(message: str) -> None:
    """Say on stderr something the user should know that does not stop the command (``ganzoo: warning: ...``)."""
    print(f"ganzoo: warning: {message}", file=sys.stderr)
