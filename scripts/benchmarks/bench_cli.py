"""Speed of `volgen synthesize` with the default settings, as a user runs it: wall time and peak memory of the whole
command (start-up, model loading, preprocessing, sampling, writing) on

- one 2 mm phantom case (96x112x96), target: at most 10 s on 2 CPU cores at the defaults (posterior mean of K
  samples and its uncertainty map);
- one 1 mm BraTS-size case (240x240x155, int16, LPS), built from a 1 mm phantom.

Each run is its own process (peak RSS of the child; CUDA peak is not separated). The baseline measured in the same
run is the sampling time the sidecar records, so 'overhead' is the share of the wall time spent outside sampling.
The breakdown: the phases the sidecar times (read, load model, preprocess, sample, restore, write) and 'start-up',
the rest of the wall time (Python, imports, argument parsing, the montage).

    python scripts/benchmarks/bench_cli.py [--out bench_out/cli] [--device cpu] [--repeats 1]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

TARGET_SECONDS = 10.0


# the `volgen ARGS` command (volgen.cli.entry: main, then an exit without the interpreter's teardown), reporting
# its own peak RSS on the last line of stderr
VOLGEN = ("import os, resource, sys; from volgen.cli import main; rc = main(sys.argv[1:]); "
          "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
          "sys.stdout.flush(); sys.stderr.flush(); os._exit(rc)")


def run_volgen(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one `volgen` command in its own process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", VOLGEN, *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"volgen {' '.join(args)} failed:\n{proc.stderr}")
    return wall, int(proc.stderr.strip().splitlines()[-1].split()[1]) / 1024


def phantom(out: Path, spacing: int) -> Path:
    case = out / f"phantom-s0-0000-{spacing}mm"
    if not case.exists():
        tmp = out / f"tmp-{spacing}mm"
        subprocess.run([sys.executable, "-m", "volgen", "phantom", "--n", "1", "--seed", "0", "--spacing",
                        str(spacing), "--no-pet", "--no-montage", "--out", str(tmp), "--overwrite"], check=True,
                       capture_output=True)
        (tmp / "phantom-s0-0000").rename(case)
        tmp.rmdir()
    return case


def brats_size_case(out: Path) -> Path:
    """The 1 mm phantom (192x224x192 RAS) as BraTS stores cases: 240x240x155, int16, LPS."""
    case = out / "BraTS-size-00000"
    if case.exists():
        return case
    source = phantom(out, 1)
    case.mkdir(parents=True)
    for contrast in ("t1n", "t2w", "t2f"):
        img = nib.load(source / f"phantom-s0-0000-{contrast}.nii.gz")
        ras = np.asarray(img.dataobj, dtype=np.float32)
        lps = ras[::-1, ::-1, :]
        brain_z = np.flatnonzero(lps.max(axis=(0, 1)) > 0)
        z0 = int(np.clip((brain_z[0] + brain_z[-1]) // 2 - 155 // 2, 0, lps.shape[2] - 155))
        vol = np.zeros((240, 240, 155), np.float32)
        vol[24:216, 8:232, :] = lps[:, :, z0:z0 + 155]
        scaled = np.rint(vol / vol.max() * 3000).astype(np.int16)
        affine = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239], [0, 0, 1.0, 0], [0, 0, 0, 1]])
        out_img = nib.Nifti1Image(scaled, affine)
        out_img.set_data_dtype(np.int16)
        nib.save(out_img, str(case / f"{case.name}-{contrast}.nii.gz"))
    return case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_out/cli")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = {"2 mm phantom (96x112x96)": phantom(out, 2), "1 mm BraTS-size (240x240x155)": brats_size_case(out)}
    rows = []
    for label, case in cases.items():
        for repeat in range(args.repeats):
            result = out / "synthesized"
            wall, peak = run_volgen(["synthesize", "--cond", "t1n,t2w,t2f", "--target", "t1c", str(case), "-o",
                                     str(result), "--overwrite", "--no-progress", "--device", args.device])
            sidecar = json.loads((result / case.name / f"{case.name}-synthesis.json").read_text())
            sample = sidecar["seconds"]["sample t1c"]
            phases = {name.replace(" t1c", ""): seconds for name, seconds in sidecar["seconds"].items()}
            phases["start-up"] = wall - sum(phases.values())
            rows.append({"case": label, "repeat": repeat, "wall_s": wall, "sample_s": sample, "peak_rss_mb": peak,
                         "phases": phases,
                         "overhead": (wall - sample) / wall, "steps": sidecar["steps"], "device": sidecar["device"],
                         "samples": sidecar.get("samples", 1),
                         "model_grid": sidecar["model_grid"]})
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{'case':32} {'device':>6} {'steps':>5} {'K':>3} {'wall s':>8} {'sample s':>9} {'outside':>8} {'peak MB':>8}"
          f" {'vs 10 s':>8}")
    for r in rows:
        print(f"{r['case']:32} {r['device']:>6} {r['steps']:>5} {r['samples']:>3} {r['wall_s']:>8.1f} "
              f"{r['sample_s']:>9.1f} {r['overhead']:>7.1%} {r['peak_rss_mb']:>8.0f} {r['wall_s'] / TARGET_SECONDS:>7.2f}x")
    names = list(rows[0]["phases"])
    print(f"\n{'breakdown (s)':32} " + " ".join(f"{n:>10}" for n in names))
    for r in rows:
        print(f"{r['case']:32} " + " ".join(f"{r['phases'].get(n, 0.0):>10.2f}" for n in names))
    two_mm = [r["wall_s"] for r in rows if r["case"].startswith("2 mm")]
    best = min(two_mm)
    print(f"\n2 mm case: {best:.1f} s (target < {TARGET_SECONDS:.0f} s: {'met' if best < TARGET_SECONDS else 'MISSED'})")


if __name__ == "__main__":
    main()
