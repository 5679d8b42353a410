"""volgen: diffusion-based synthesis of 3D medical volumes."""
__version__ = "0.1.0"
