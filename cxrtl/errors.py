"""The one exception type a user is meant to read."""


class CxrtlError(Exception):
    """Bad input or an unusable environment, explained in one line.

    The CLI prints the message as ``cxrtl: error: <message>`` and exits 2; anything
    else that escapes is a bug and keeps its traceback.
    """
