"""The one exception type users see: a one-line message naming the problem."""


class ClulError(Exception):
    """Bad input or a state that refuses the operation. The message is one line."""
