"""What made an output: the software, its version and the command line, recorded in every sidecar."""
from __future__ import annotations

import shlex
import sys

from volgen.version import __version__

# set by the `volgen` command (cli.main) to the arguments it was given; the library alone leaves it None
COMMAND: list[str] | None = None


def command_line() -> str:
    """`volgen ...` as typed, or the Python program that called the library."""
    if COMMAND is not None:
        return shlex.join(["volgen", *COMMAND])
    return shlex.join(["python", *sys.argv])


def software() -> dict:
    return {"name": "volgen", "version": __version__, "command": command_line()}
