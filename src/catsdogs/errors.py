"""The one base class for mistakes a user can fix.

A `UserError` means "your input is wrong": a params key, a file, a URL, a server address.
Its message names the bad value and what to do, in one line, so the stages and the CLI show
it without a traceback (`stage_support.fails_clearly`). Anything else, a shape error deep in
Keras say, is a bug of ours and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An input the user can fix; the message says which and how."""
