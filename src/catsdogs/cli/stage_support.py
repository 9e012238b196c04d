"""What every stage command shares: logging set-up, params loading, clear failures.

Used by the click commands in `stages/`; the library modules never import it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click

from catsdogs.core.errors import UserError, interrupted

F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: bool = False) -> None:
    """Log lines to stderr, once, for the whole process (TensorFlow's C++ side: catsdogs/__init__)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("urllib3", "alembic", "mlflow.store", "matplotlib", "PIL", "git", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fails_clearly(command: F) -> F:
    """Show a UserError (a bad params key, file, URL) as one line and exit 1, no traceback.

    Any other exception is a bug of ours, not the user's: it keeps its traceback.
    """
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as error:
            raise click.ClickException(str(error)) from error
        except Exception as error:
            if interrupted(error):  # Ctrl-C that a library reworded: still Ctrl-C
                raise KeyboardInterrupt from error
            raise

    return wrapper  # type: ignore[return-value]


params_option = click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False),
    default="params.yaml",
    show_default=True,
    # Which sections each stage reads is said once, in its module docstring, beside the code
    # that reads them: a list here would be a second copy to drift.
    help="Parameters file; the stage reads the sections named at the top of its file, "
         "stages/<stage>.py (several, for all but download).",
)
