"""The ``viscoin`` command line: one module per command group, no logic of its own.

Each module parses options, calls the library and prints. A :class:`~viscoin.errors.UserError`
anywhere below becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
import warnings
from typing import Annotated

import typer

from viscoin.errors import UserError, UserNotice, user_message

# Help texts are plain text: with rich markup, "pip install 'viscoin[data]'" would lose "[data]".
app = typer.Typer(
    name="viscoin",
    help="VisCoIN: learn the concepts a classifier uses and show them through a StyleGAN2 generator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,
)
train_app = typer.Typer(
    help="Train a classifier, a StyleGAN2 generator or a VisCoIN ensemble.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
test_app = typer.Typer(
    help="Test a trained model on a dataset's test split.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from viscoin import __version__

        typer.echo(f"viscoin {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """VisCoIN: learn the concepts a classifier uses and show them through a StyleGAN2 generator."""


app.add_typer(train_app, name="train")
app.add_typer(test_app, name="test")


def _register() -> None:
    # Importing a command module registers its commands on the apps above.
    from viscoin.cli import (  # noqa: F401
        config_cmd,
        data,
        demo,
        evaluate,
        explain,
        explore,
        gan,
        info,
        interpret,
        train,
    )


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``viscoin`` console script."""
    previous = warnings.showwarning

    def show(message, category, *args, **kwargs) -> None:
        """A :class:`UserNotice` as one ``warning:`` line; any other warning as before."""
        if issubclass(category, UserNotice):
            typer.echo(f"warning: {message}", err=True)
        else:
            previous(message, category, *args, **kwargs)

    warnings.showwarning = show
    try:
        app(args=argv, standalone_mode=True)
    except UserError as exc:
        typer.echo(f"error: {user_message(exc)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    finally:
        warnings.showwarning = previous
