"""What every stage command shares: logging set-up, params loading, clear failures.

Used by the click commands in `stages/`; the library modules never import it.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from catsdogs.config import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

# Errors that mean "your input is wrong": shown as one clear line, exit code 1, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ValueError, FileNotFoundError)


def setup_logging(verbose: bool = False) -> None:
    """Log lines to stderr, once, for the whole process; quiet TensorFlow's C++ chatter."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("urllib3", "alembic", "mlflow.store", "matplotlib", "PIL", "git", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fails_clearly(*errors: type[BaseException]) -> Callable[[F], F]:
    """Turn the given exception types (and USER_ERRORS) into a click error: message, exit 1."""
    caught = USER_ERRORS + errors

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except caught as error:
                raise click.ClickException(str(error)) from error

        return wrapper  # type: ignore[return-value]

    return decorate


params_option = click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False),
    default="params.yaml",
    show_default=True,
    help="Parameters file; the stage reads its own section of it.",
)
