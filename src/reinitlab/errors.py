"""One exception type for user mistakes, so the entry point can print them without a traceback."""


class ReinitlabError(ValueError):
    """Bad input from the user (an option, a path, a file): the message says which and what to do."""
