"""The jobs (synthesis, super-resolution, inpainting, Patlak): one file and one entry point each. `generate` is the
sampling path they share."""
from volgen.tasks.generate import ESTIMATES, Estimate, default_sampler, generate

__all__ = ["ESTIMATES", "Estimate", "default_sampler", "generate"]
