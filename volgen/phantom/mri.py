"""MR contrasts from signal equations with literature relaxation times at 3 T.

Relaxation times (ms) and proton density: GM and WM from Wansapura et al. 1999 (JMRI 9:531, 3 T: GM T1 1331 /
T2 110, WM T1 832 / T2 80); CSF T1 about 4.2 s at 3 T (Lu et al. 2005) with T2 about 2 s; lesion tissues from
reported ranges at 3 T (vasogenic oedema: long T1 and T2, more water; enhancing tumour: moderately long T1/T2;
necrosis: fluid-like). Gadolinium shortens relaxation in proportion to its concentration C (mM):
1/T1' = 1/T1 + r1 C and 1/T2' = 1/T2 + r2 C, with r1 ~ 4 and r2 ~ 5 /mM/s for macrocyclic agents at 3 T.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TISSUES = ("csf", "gm", "wm", "necrotic", "oedema", "enhancing")


@dataclass(frozen=True)
class Tissue:
    t1: float   # ms
    t2: float   # ms
    pd: float   # relative proton density
    gd_mM: float = 0.0   # gadolinium concentration after injection


TISSUES_3T = {
    "csf": Tissue(t1=4200.0, t2=2000.0, pd=1.00),
    "gm": Tissue(t1=1331.0, t2=110.0, pd=0.80),
    "wm": Tissue(t1=832.0, t2=80.0, pd=0.70),
    "necrotic": Tissue(t1=2500.0, t2=350.0, pd=0.92, gd_mM=0.02),
    "oedema": Tissue(t1=1750.0, t2=200.0, pd=0.88, gd_mM=0.0),
    "enhancing": Tissue(t1=1600.0, t2=130.0, pd=0.85, gd_mM=0.35),
}
R1_GD, R2_GD = 4.0, 5.0   # relaxivities, 1/(mM s)


@dataclass(frozen=True)
class Sequence:
    """Spin echo (tr, te) or inversion recovery (tr, te, ti); ti=None with inversion=True nulls CSF."""

    tr: float
    te: float
    inversion: bool = False
    ti: float | None = None
    contrast_agent: bool = False


SEQUENCES = {
    "t1n": Sequence(tr=500.0, te=12.0),
    "t1c": Sequence(tr=500.0, te=12.0, contrast_agent=True),
    "t2w": Sequence(tr=5000.0, te=100.0),
    "t2f": Sequence(tr=9000.0, te=100.0, inversion=True),
}


def csf_null_ti(tr: float, t1_csf: float) -> float:
    """Inversion time at which CSF's longitudinal magnetisation crosses zero: 1 - 2e^{-TI/T1} + e^{-TR/T1} = 0."""
    return t1_csf * np.log(2.0 / (1.0 + np.exp(-tr / t1_csf)))


def signal(tissue: Tissue, seq: Sequence, t1_csf: float) -> float:
    """Magnitude signal of one tissue (PD-weighted, unit receive gain)."""
    t1, t2 = tissue.t1, tissue.t2
    if seq.contrast_agent and tissue.gd_mM > 0:
        t1 = 1.0 / (1.0 / t1 + R1_GD * tissue.gd_mM / 1000.0)
        t2 = 1.0 / (1.0 / t2 + R2_GD * tissue.gd_mM / 1000.0)
    e2 = np.exp(-seq.te / t2)
    if seq.inversion:
        ti = seq.ti if seq.ti is not None else csf_null_ti(seq.tr, t1_csf)
        mz = 1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-seq.tr / t1)
        return float(tissue.pd * abs(mz) * e2)
    return float(tissue.pd * (1.0 - np.exp(-seq.tr / t1)) * e2)


def jitter_tissues(tissues: dict[str, Tissue], rng: np.random.Generator, amount: float) -> dict[str, Tissue]:
    """Each T1, T2 and PD scaled by an independent factor in [1 - amount, 1 + amount]."""
    if amount <= 0:
        return dict(tissues)
    out = {}
    for name, t in tissues.items():
        f = rng.uniform(1 - amount, 1 + amount, 3)
        out[name] = Tissue(t.t1 * f[0], t.t2 * f[1], min(1.0, t.pd * f[2]), t.gd_mM)
    return out


def render(fractions: dict[str, np.ndarray], tissues: dict[str, Tissue], seq: Sequence) -> np.ndarray:
    """Partial-volume signal: sum over tissues of fraction x tissue signal."""
    out = np.zeros(next(iter(fractions.values())).shape, np.float32)
    for name, frac in fractions.items():
        out += np.float32(signal(tissues[name], seq, tissues["csf"].t1)) * frac
    return out


def bias_field(shape, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Smooth multiplicative field exp(cubic polynomial), spanning roughly +-strength over the volume."""
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    log = np.zeros(shape, np.float32)
    for i in range(4):
        for j in range(4 - i):
            for k in range(4 - i - j):
                if i + j + k:
                    log = log + np.float32(rng.normal(0.0, strength / 3.0)) * x ** i * y ** j * z ** k
    return np.exp(log)


@dataclass
class RicianNoise:
    """Two Gaussian channels drawn once, so a tumour case and its healthy twin share the same noise exactly."""

    real: np.ndarray
    imag: np.ndarray

    @classmethod
    def draw(cls, shape, rng: np.random.Generator) -> "RicianNoise":
        return cls(rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32))

    def apply(self, clean: np.ndarray, sigma: float) -> np.ndarray:
        s = np.float32(sigma)
        return np.sqrt((clean + s * self.real) ** 2 + (s * self.imag) ** 2)


@dataclass(frozen=True)
class MRISpec:
    tissues: dict = field(default_factory=lambda: dict(TISSUES_3T))
    sequences: dict = field(default_factory=lambda: dict(SEQUENCES))
    jitter: float = 0.05                 # relative contrast jitter of T1/T2/PD per case (0: off)
    gd_mM: tuple = (0.2, 0.5)            # enhancing tumour gadolinium concentration range
    bias: float = 0.2                    # bias field strength
    noise: tuple = (0.01, 0.03)          # Rician sigma as a fraction of the brain's 99th-percentile signal
    texture: float = 0.03                # within-tissue texture: a gain of 1 + texture x tanh(a unit field)
    texture_mm: float = 8.0              # ... smooth on this scale (anatomy.smooth_field's control lattice)
    scale: float = 1000.0                # intensity units per unit signal
