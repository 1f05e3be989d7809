"""The one exception the host commands raise for the user to read."""


class HostError(Exception):
    """A failure explained in one line; the CLI prints it and exits non-zero."""
