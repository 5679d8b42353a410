"""Procedural brain cases with exact ground truth, built on the MNI152 maps nilearn ships."""
from volgen.phantom.case import PhantomCase, PhantomSpec, generate_case, read_tsv, write_case
from volgen.phantom.corpus import generate_corpus

__all__ = ["PhantomCase", "PhantomSpec", "generate_case", "generate_corpus", "read_tsv", "write_case"]
