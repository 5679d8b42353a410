"""The README's three pictures (docs/images/), made by the jobs as a user runs them: the shipped models, the CPU
defaults, on the held-out phantom phantom-s200-0000 (generated here). t1c synthesised from t1n, t2w and t2f; t2f
restored from its 8 mm slices (block means along z); the tumour of t2f filled with healthy tissue. Each picture is the
job's own montage: inputs, output, uncertainty."""
import shutil
import sys
import tempfile
from pathlib import Path

from volgen.api import run_inpainting, run_super_resolution, run_synthesis
from volgen.io.nifti import read_volume, write_volume
from volgen.phantom import PhantomSpec, generate_case, write_case
from volgen.tasks.super_resolution import thick_volume

IMAGES = Path(__file__).resolve().parents[3] / "docs" / "images"


def main(out=IMAGES) -> int:
    work = Path(tempfile.mkdtemp(prefix="volgen-readme-"))
    try:
        case = write_case(generate_case(seed=200, index=0, spec=PhantomSpec(pet=None)), work)
        name = case.name
        made = run_synthesis(case, cond="t1n,t2w,t2f", out=work / "syn", progress=True)
        shutil.copy(made.info["montage"], out / "synthesize.png")
        thick = work / f"{name}-t2f-thick.nii.gz"
        write_volume(thick_volume(read_volume(case / f"{name}-t2f.nii.gz"), 4, 2), thick)
        made = run_super_resolution(thick, factor=4, axis="z", contrast="t2f", out=work / "sr.nii.gz",
                                               progress=True)
        shutil.copy(made.info["montage"], out / "super-resolve.png")
        made = run_inpainting(case / f"{name}-t2f.nii.gz", case / f"{name}-seg.nii.gz", mode="healthy",
                                         out=work / "healthy.nii.gz", progress=True)
        shutil.copy(made.info["montage"], out / "inpaint.png")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}/synthesize.png, super-resolve.png, inpaint.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
