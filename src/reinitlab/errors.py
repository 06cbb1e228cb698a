"""One exception type for user mistakes, so the entry point can print them without a traceback."""


class ReinitlabError(ValueError):
    """Bad input from the user (an option, a path, a file): the message says which and what to do."""


class ModelSourceError(ReinitlabError):
    """The model's files cannot be found or loaded. Every job of a sweep that uses the model
    fails the same way, so a sweep reports it once rather than once per job."""
