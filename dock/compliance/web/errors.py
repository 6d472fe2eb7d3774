"""The one exception the page's commands stop with."""


class PageError(Exception):
    """A command that must stop; the message says why."""
