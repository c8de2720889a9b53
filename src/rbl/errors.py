"""The one exception type the command line turns into a clean message instead of a traceback, and
the wording shared by the stages that skip bad clips (`features.on_error`)."""


class InputError(ValueError):
    """Bad user input (file, row, key or setting): the message says where and what to do."""


ON_ERROR_HINT = (
    "or set the config key features.on_error: skip to leave such clips out "
    "(they are listed with the reason in results/<dataset>/skipped.csv)"
)


def reason(err: Exception, path: str) -> str:
    """An error's message without the leading '<path>: ' (the skipped list names the file itself)."""
    text = str(err)
    return text[len(path) + 2 :] if text.startswith(f"{path}: ") else text
