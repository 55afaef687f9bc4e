"""The errors that are the user's to fix. `pkdot` prints one of them as one line, `pkdot: error: ...`, and exits
with status 2; any other exception under `pkdot` is a bug (or an environment failure) and keeps its traceback.

The library raises these types where it checks what a user gave: the command line, a config or sweep file, a
config value, a data download, a run directory. Each also subclasses the built-in exception that existing
callers catch (ValueError, FileNotFoundError). Standard library only: the command line imports it first.
"""

from __future__ import annotations


class UserError(Exception):
  """A mistake in what the user gave; the message names the flag, field, file or directory."""


class ConfigError(UserError, ValueError):
  """A config value (or config variant) outside what its field admits; the message starts with the field."""


class MissingError(UserError, FileNotFoundError):
  """A file or directory that the user named, or that a command needs from an earlier step, is not there."""


class UsageError(UserError, ValueError):
  """A command-line flag or argument that does not fit the command (unknown, misplaced, malformed, missing)."""
