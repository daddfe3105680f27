"""The argument parser of every balloon-gym command: bad input is one line and exit code 2.

argparse's own ``error`` prints the usage block and then the message, and a message built from
an exception may span lines. Scripts and evaluation pipelines read the last line of stderr, so
every command here reports bad input as exactly one line, ``PROG: error: MESSAGE (see PROG
--help)``, and exits with code 2 before it writes anything.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_BAD_INPUT = 2
"""Exit code of every command for bad input (argparse's convention)."""


def one_line(message: object) -> str:
    """A (possibly multi-line) message as one line: ``"a:" + "b"`` gives ``"a: b"``, other
    line breaks become ``"; "``, and runs of spaces fold into one."""
    lines = [" ".join(line.split()) for line in str(message).splitlines() if line.strip()]
    joined = ""
    for line in lines:
        joined += line if not joined else (" " if joined.endswith(":") else "; ") + line
    return joined


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` as one line and exit with 2."""
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
        sys.exit(EXIT_BAD_INPUT)
