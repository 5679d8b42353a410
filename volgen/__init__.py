"""volgen: diffusion-based synthesis of 3D medical volumes.

The jobs (`volgen.synthesize`, `volgen.super_resolve`, `volgen.inpaint`, `volgen.insert_lesion`, `volgen.patlak`) are
imported on first use, so `import volgen` stays light (no torch) until one is called.
"""
from volgen.version import __version__

_API = ("synthesize", "super_resolve", "inpaint", "insert_lesion", "patlak")
# the other public names, and the module each comes from (imported on first use, like the jobs)
_NAMES = {"Volume": "volgen.io.volume", "read_volume": "volgen.io.nifti", "write_volume": "volgen.io.nifti",
          "InputError": "volgen.errors", "OutputError": "volgen.errors", "VolgenError": "volgen.errors",
          "VolgenWarning": "volgen.errors"}
__all__ = ["__version__", *_API, *_NAMES]


def __getattr__(name):
    if name in _API:
        from volgen import api
        return getattr(api, name)
    if name in _NAMES:
        import importlib
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'volgen' has no attribute '{name}'")


def __dir__():
    return sorted({*globals(), *__all__})
