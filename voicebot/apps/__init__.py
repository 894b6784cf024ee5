"""Application entry points: the processes that wire parts of several packages together."""
