"""volgen: diffusion-based synthesis of 3D medical volumes.

The jobs (`volgen.synthesize`, `volgen.super_resolve`, `volgen.inpaint`, `volgen.patlak`) are imported on first use, so
`import volgen` stays light (no torch) until one is called.
"""
__version__ = "0.1.0"

_API = ("synthesize", "super_resolve", "inpaint", "patlak")
__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        from volgen import api
        return getattr(api, name)
    raise AttributeError(f"module 'volgen' has no attribute '{name}'")
