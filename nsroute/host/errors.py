"""The one exception the host commands raise for the user to read."""


class HostError(Exception):
    """A failure explained in one line; the CLI prints it and exits non-zero.

    `errno` carries the kernel's error number where one caused it, so that callers decide
    on the number, never on the wording of a message.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
