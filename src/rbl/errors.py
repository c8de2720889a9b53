"""The one exception type the command line turns into a clean message instead of a traceback."""


class InputError(ValueError):
    """Bad user input (file, row, key or setting): the message says where and what to do."""
