"""The one exception type that means "the user gave us something we cannot use".

The CLI turns it into a single readable message and a non-zero exit code instead of a traceback;
anything else escaping is a bug in this project and keeps its traceback.
"""


class UserInputError(ValueError):
    """Bad input (file, shape, config, name): the message says what is wrong and what to do."""
