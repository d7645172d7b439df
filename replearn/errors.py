"""One exception type for problems a user can fix: scripts print its message as one line."""


class ReplearnError(Exception):
    """A user-facing error whose message names the problem and the fix."""
