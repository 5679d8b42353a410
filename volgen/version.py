"""volgen's version, from the installed package's metadata (pyproject.toml is where it is set)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("volgen")
except PackageNotFoundError:          # a source tree that was never installed
    __version__ = "0+unknown"
