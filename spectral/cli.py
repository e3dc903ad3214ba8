"""What the lab's four command lines (``spectral``, ``theory_checks``, ``figures``, ``lab``) share.

One error convention: a bad argument, config key, value or file prints one line on stderr,

  error: <argument or key>: expected <what>, got <what>; <what to do>

and the command exits with status 2; no traceback unless ``--debug`` is on the command line (anywhere). Usage errors
found by the parser follow the same form (``ArgumentParser``), and an unexpected error (a bug) prints one line too,
saying that ``--debug`` shows its traceback, and exits with status 1.

And one way to print a measured number: rounded to its uncertainty when it has one (``round_to_uncertainty``),
otherwise to four significant digits (``format_number``).

This module lives in ``spectral`` because every other package of the lab may import ``spectral`` and ``spectral``
imports no other package of the lab.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import traceback
from typing import Callable, Sequence

DEBUG_FLAG = "--debug"
DEBUG_HELP = "show the Python traceback of an error instead of the one-line message (anywhere on the command line)"
USER_ERRORS = (ValueError, TypeError, KeyError, LookupError, OSError)
"""Exceptions that report bad input (arguments, config keys, files); anything else is a bug."""

_ARGPARSE_FORMS = (
    (re.compile(r"argument (\S+?): invalid (\w+) value: (.+)"), r"\1: expected \2, got \3"),
    (re.compile(r"argument (\S+?): invalid choice: (\S+) \(choose from (.+)\)"), r"\1: expected one of \3, got \2"),
    (re.compile(r"argument (\S+?): expected ((?:at least |at most )?one argument|\d+ arguments?)"),
     r"\1: expected \2, got none"),
    (re.compile(r"the following arguments are required: (.+)"), r"\1: expected a value, got none"),
    (re.compile(r"unrecognized arguments: (.+)"), r"\1: expected a known option or argument, got an unrecognized one"),
    (re.compile(r"argument (\S+?): not allowed with argument (\S+)"), r"\1: expected alone, got it with \2"),
    (re.compile(r"argument (\S+?): (.+)"), r"\1: \2"),  # an ArgumentTypeError's own "expected ..." message
)


def one_line(text: str) -> str:
  """``text`` with its line breaks and runs of spaces collapsed (``"; "`` between lines)."""
  lines = [" ".join(part.split()) for part in str(text).splitlines()]
  return "; ".join(line for line in lines if line)


def error_message(exc: BaseException) -> str:
  """The message of ``exc`` as the text after ``error: ``."""
  if isinstance(exc, KeyError) and exc.args:
    return one_line(exc.args[0])
  if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
    return (f"{exc.filename}: expected a readable path, got {exc.strerror.lower()}; check the path (relative paths "
            "start at the current folder)")
  return one_line(str(exc)) or type(exc).__name__


class ArgumentParser(argparse.ArgumentParser):
  """``argparse.ArgumentParser`` whose usage errors are one ``error:`` line in the lab's form, exit status 2.

  Subparsers made with ``add_subparsers`` are of this class too.
  """

  def error(self, message: str):
    text = message
    for pattern, form in _ARGPARSE_FORMS:
      if pattern.fullmatch(message):
        text = pattern.sub(form, message)
        break
    self.exit(2, f"error: {text}; see '{self.prog} --help'\n")


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
  """Document ``--debug`` in ``parser``'s help (``run`` reads it from anywhere on the command line)."""
  parser.add_argument(DEBUG_FLAG, action="store_true", help=DEBUG_HELP)


def run(main: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
  """Call ``main(argv)`` (``argv`` without ``--debug``) and turn an exception into the one-line error.

  Returns ``main``'s exit status, 2 for bad input (``USER_ERRORS``) and usage errors, 1 for any other exception,
  0 after ``--help``. With ``--debug`` the exception propagates with its traceback.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  debug = DEBUG_FLAG in argv
  argv = [a for a in argv if a != DEBUG_FLAG]
  try:
    return main(argv)
  except KeyboardInterrupt:
    raise
  except SystemExit as exc:  # the parser's usage error (already printed as one line) or --help
    return exc.code if isinstance(exc.code, int) else 2
  except BrokenPipeError:  # the reader of stdout went away (``| head``): nothing left to say
    sys.stdout = open(os.devnull, "w")
    return 0
  except Exception as exc:  # noqa: BLE001 - the command line's single place that reports errors
    if debug:
      raise
    if isinstance(exc, USER_ERRORS):
      print(f"error: {error_message(exc)}", file=sys.stderr)
      return 2
    where = traceback.extract_tb(exc.__traceback__)[-1]
    print(f"error: unexpected {type(exc).__name__} at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}: "
          f"{error_message(exc)}; rerun with --debug for the traceback and report it", file=sys.stderr)
    return 1


def format_number(x, digits: int = 4) -> str:
  """``x`` to ``digits`` significant digits (integers and non-numbers as they are)."""
  if isinstance(x, bool) or x is None:
    return str(x)
  if isinstance(x, int) or (hasattr(x, "dtype") and getattr(x.dtype, "kind", "") in "iu"):
    return str(int(x))
  try:
    v = float(x)
  except (TypeError, ValueError):
    return str(x)
  return "nan" if math.isnan(v) else f"{v:.{digits}g}"


def round_to_uncertainty(x: float, se: float | None, sep: str = " +- ") -> str:
  """``x`` and its standard error ``se`` with ``se`` rounded to one significant digit (two when it starts with a 1
  or 2) and ``x`` to the same decimal place, e.g. ``(2.34567, 0.0123) -> "2.346 +- 0.012"``.

  Without a finite positive ``se`` it is ``format_number(x)``.
  """
  if x is None or se is None or not math.isfinite(float(x)) or not math.isfinite(float(se)) or float(se) <= 0:
    return format_number(x)
  x, se = float(x), float(se)
  exponent = math.floor(math.log10(se))
  lead = se / 10.0**exponent
  decimals = -(exponent - (1 if lead < 3 else 0))
  if decimals <= 0:
    scale = 10.0 ** (-decimals)
    return f"{round(x / scale) * scale:.0f}{sep}{round(se / scale) * scale:.0f}"
  return f"{x:.{decimals}f}{sep}{se:.{decimals}f}"
