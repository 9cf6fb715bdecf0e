"""Errors that mean "the input is wrong", told apart from bugs.

The ``seq2exp`` command prints these as one line (exit status 2) and anything else with its
traceback as a bug to report (exit 1), so a mistake in our code never reads as the user's. Both
classes subclass the built-in errors they replace: ``except ValueError`` / ``except KeyError``
in callers keeps working.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: a file's content, a column, a chromosome, a gene, an option or a configuration
    entry; the message names it."""


class MissingInputError(InputError, KeyError):
    """Something the input was asked for and does not have (a column, gene, chromosome or cell
    type); also a ``KeyError``."""

    def __str__(self) -> str:  # the message as written, without KeyError's quotes
        return str(self.args[0]) if self.args else ""


#: What the user can fix, reported without a traceback by our entry points (the ``seq2exp``
#: command, Kipoi): bad input, and files that are missing, unreadable or unwritable.
USER_ERRORS = (InputError, OSError)
