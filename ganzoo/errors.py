"""The one exception type the CLI turns into a one-line message and exit code 2."""


class GanzooError(Exception):
    """A problem with the user's input (config, data, checkpoint, plugin name): shown as one line, exit code 2."""
