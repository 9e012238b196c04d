"""The one base class for mistakes a user can fix.

A `UserError` means "your input is wrong": a params key, a file, a URL, a server address.
Its message names the bad value and what to do, in one line, so the stages and the CLI show
it without a traceback (`stage_support.fails_clearly`). Anything else, a shape error deep in
Keras say, is a bug of ours and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An input the user can fix; the message says which and how."""


def interrupted(error: BaseException) -> bool:
    """Whether `error` is Ctrl-C, or was raised while handling one.

    A KeyboardInterrupt that lands inside a library's context manager can come out as that
    library's own error: TensorFlow's device scope, interrupted on exit, raises RuntimeError
    ("Exiting device scope without proper scope nesting") with the interrupt as its context.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False
