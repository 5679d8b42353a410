"""The GPU path in one command (`make gpu-check`): everything volgen runs on CUDA, run once, with a JSON and a log.

On a machine with CUDA, in a few minutes:
1. the test suite with CUDA visible and the Triton kernels compiled for real (not interpreted);
2. scripts/benchmarks/bench_kernels.py (fused, eager and MONAI rows; the GPU targets);
3. each job with --device cuda, at the GPU defaults, on a 2 mm phantom and on a 1 mm phantom: synthesis (t1c from
   the other three), 4x super-resolution (t2f), pseudo-healthy inpainting (t2f), lesion insertion (every contrast,
   the phantom's own labels into its healthy twin) and Patlak (diffusion). Each records wall and sampling seconds and
   peak GPU memory, and its posterior mean is compared with the same job on the CPU (same seed and settings):
   PSNR of the CUDA output against the CPU output on the output's range (target: the two agree within 0.1 dB of
   PSNR against the truth; this reports both);
4. a module trained 20 steps, then resumed to 30.
Without CUDA it says so in one line and runs the same steps on the CPU at tiny sizes (a crop around the tumour, a few
tests, no kernel bench, 2+1 training steps): what `make test` runs to keep this script working.

Writes <out>/gpu-check.json and <out>/gpu-check.log; exits 1 naming every step that failed.

    python scripts/tools/gpu_check.py --out "$OUT"        # or VOLGEN_GPU_CHECK_OUT
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


class Log:
    """Every line printed and kept for the log file."""

    def __init__(self, path: Path):
        self.path, self.lines = path, []

    def __call__(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)
        self.path.write_text("\n".join(self.lines) + "\n")


def crop_case(folder: Path, out: Path, size: int) -> Path:
    """The case cropped to a size^3 box around its tumour (every NIfTI, 3D and 4D, the same box)."""
    out.mkdir(parents=True, exist_ok=True)
    name = folder.name
    seg = np.asarray(nib.load(folder / f"{name}-seg.nii.gz").dataobj)
    centre = np.argwhere(seg > 0).mean(0).round().astype(int)
    starts = [int(min(max(c - size // 2, 0), n - size)) for c, n in zip(centre, seg.shape)]
    box = tuple(slice(a, a + size) for a in starts)
    for path in folder.iterdir():
        if path.name.endswith(".nii.gz"):
            img = nib.load(path)
            nib.save(img.slicer[box], out / path.name)
        elif path.suffix in (".tsv", ".json"):
            (out / path.name).write_bytes(path.read_bytes())
    return out


def make_cases(work: Path, tiny: bool) -> dict[str, Path]:
    """{label: case folder}: a 2 mm and a 1 mm phantom on a GPU; a 2 mm phantom cropped to 32^3 on a CPU."""
    from volgen.phantom import PhantomSpec, generate_case, write_case

    cases = {}
    for spacing in ((2,) if tiny else (2, 1)):
        folder = write_case(generate_case(seed=900, index=spacing, spec=PhantomSpec(spacing=spacing)),
                            work / f"phantoms-{spacing}mm", overwrite=True, montage=False)
        cases[f"{spacing} mm"] = crop_case(folder, work / "tiny" / folder.name, 32) if tiny else folder
    return cases


def thick_t2f(folder: Path, out: Path) -> Path:
    """The case's t2f averaged over blocks of 4 slices along z: a thick-slice input for super-resolution."""
    from volgen.io.nifti import read_volume, write_volume
    from volgen.tasks.super_resolution import thick_volume

    volume = read_volume(folder / f"{folder.name}-t2f.nii.gz")
    n = volume.shape[2] // 4 * 4
    volume = volume.with_array(volume.array[:, :, :n])
    write_volume(thick_volume(volume, 4, 2), out, overwrite=True)
    return out


def jobs(case: Path, work: Path) -> dict:
    """{job: callable(device, seed) -> (output arrays {name: array}, info)} for one case."""
    from volgen import api
    from volgen.phantom.case import write_twin_case

    name = case.name
    thick = thick_t2f(case, work / f"{name}-t2f-thick.nii.gz")
    twin = write_twin_case(case, work / f"{name}-twin")

    def run(result):
        return {k: v.array.astype(np.float64) for k, v in result.outputs.items()}, result.info

    return {
        "synthesis": lambda **kw: run(api.run_synthesis(case, cond="t1n,t2w,t2f", target="t1c", **kw)),
        "super_resolution": lambda **kw: run(api.run_super_resolution(thick, factor=4, axis="z", **kw)),
        "inpainting": lambda **kw: run(api.run_inpainting(case / f"{name}-t2f.nii.gz", case / f"{name}-seg.nii.gz",
                                                          mode="healthy", **kw)),
        "lesion": lambda **kw: run(api.run_lesion_insertion(twin, case / f"{name}-seg.nii.gz", **kw)),
        "patlak": lambda **kw: run(api.run_patlak(case / f"{name}-pet.nii.gz", input=case / f"{name}-pet-input.tsv",
                                                  frames=case / f"{name}-pet-frames.tsv", method="diffusion", **kw)),
    }


def agreement(a: dict, b: dict) -> float:
    """PSNR (dB) of output set `a` against `b`, over their joint range: how closely CUDA reproduces the CPU."""
    worst = np.inf
    for key in a:
        x, y = a[key], b[key]
        span = max(float(y.max() - y.min()), 1e-12)
        mse = float(np.mean((x - y) ** 2))
        worst = min(worst, np.inf if mse == 0 else 10 * np.log10(span ** 2 / mse))
    return worst


def run_jobs(cases: dict, work: Path, cuda: bool, log: Log, failed: list) -> dict:
    """Each job on each case; a job that fails is logged and named in `failed`, and the others still run."""
    results = {}
    for label, case in cases.items():
        for job, call in jobs(case, work / label.replace(" ", "")).items():
            key = f"{job} ({label})"
            try:
                results[key] = run_job(call, cuda)
                log(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in results[key].items()))
            except Exception as exc:
                failed.append(f"{key}: {exc}")
                log(f"  {key} FAILED: {exc}\n" + traceback.format_exc(limit=6))
    return results


def run_job(call, cuda: bool) -> dict:
    """Wall and sampling seconds; on a GPU also the peak memory and the agreement with the CPU."""
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    outputs, info = call(device="cuda" if cuda else "cpu", seed=0, progress=False)
    entry = {"wall_s": round(time.perf_counter() - began, 2),
             "sample_s": round(sum(v for k, v in info.get("seconds", {}).items() if k.startswith("sample")), 3)}
    if cuda:
        entry["peak_gb"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
        # the same job on the CPU, at the GPU's steps and samples, for the CUDA-vs-CPU agreement
        reference, _ = call(device="cpu", seed=0, progress=False, steps=info.get("steps"), samples=info.get("samples"))
        entry["cuda_vs_cpu_psnr_db"] = round(agreement(outputs, reference), 2)
    return entry


def run_tests(tiny: bool, log: Log) -> dict:
    # on a GPU the kernels compile for real; on a CPU Triton can only interpret them
    env = {**os.environ, "VOLGEN_KERNELS": "auto", "TRITON_INTERPRET": "1" if tiny else "0"}
    selection = ["tests/test_kernels.py", "-k", "keep_known"] if tiny else ["tests"]
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
    log(f"  pytest {' '.join(selection)}: {tail[0]} ({time.perf_counter() - began:.0f} s)")
    if done.returncode:
        log(done.stdout[-6000:])
        raise RuntimeError(f"tests failed: {tail[0]}")
    return {"summary": tail[0], "seconds": round(time.perf_counter() - began, 1)}


def run_kernel_bench(log: Log) -> dict:
    done = subprocess.run([sys.executable, "scripts/benchmarks/bench_kernels.py"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "TRITON_INTERPRET": "0"})
    for line in done.stdout.strip().splitlines():
        log(f"  {line}")
    if done.returncode:
        log(done.stderr[-4000:])
        raise RuntimeError("bench_kernels.py failed")
    return {"output": done.stdout.strip().splitlines()}


def run_training(case: Path, work: Path, tiny: bool, log: Log) -> dict:
    from volgen.cli import main as volgen

    data = work / "train-data"
    data.mkdir(exist_ok=True)
    link = data / case.name
    if not link.exists():
        link.symlink_to(case.resolve())
    run = work / "train-run"
    shutil.rmtree(run, ignore_errors=True)              # a fresh run, then its resume
    first, then = (2, 3) if tiny else (20, 30)
    crop, every = (32, 1) if tiny else (64, 10)
    common = [f"data.root={data}", f"output.dir={run}", f"train.checkpoint_every={every}", "train.log_every=1",
              f"data.crop=[{crop},{crop},{crop}]"]
    began = time.perf_counter()
    if volgen(["train", "vcm_synthesis", *common, f"train.steps={first}", "--no-progress"]):
        raise RuntimeError("training failed")
    if volgen(["train", "vcm_synthesis", f"output.dir={run}", f"train.steps={then}", "--resume", "--no-progress"]):
        raise RuntimeError("resumed training failed")
    log(f"  trained {first} steps, resumed to {then}: {time.perf_counter() - began:.0f} s")
    return {"steps": [first, then], "seconds": round(time.perf_counter() - began, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=os.environ.get("VOLGEN_GPU_CHECK_OUT", "bench_out/gpu-check"))
    parser.add_argument("--cpu", action="store_true", help="the tiny CPU path even where CUDA is available")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    log = Log(args.out / "gpu-check.log")
    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda:
        log("gpu-check: no CUDA device here: running the same steps on the CPU at tiny sizes")
    report = {"cuda": cuda, "torch": torch.__version__,
              "device": torch.cuda.get_device_name(0) if cuda else "cpu", "steps": {}, "failed": []}
    began = time.perf_counter()
    cases = {}

    def step(name: str, work_fn) -> None:
        log(f"{name}:")
        try:
            report["steps"][name] = work_fn()
        except Exception as exc:                          # every step runs; each failure is named at the end
            report["failed"].append(f"{name}: {exc}")
            log(f"  FAILED: {exc}\n" + traceback.format_exc(limit=6))
        (args.out / "gpu-check.json").write_text(json.dumps(report, indent=1, default=str))

    step("phantoms", lambda: {k: str(v) for k, v in cases.update(make_cases(work, not cuda)) or cases.items()})
    step("tests", lambda: run_tests(not cuda, log))
    if cuda:
        step("kernel bench", lambda: run_kernel_bench(log))
    if cases:
        step("jobs", lambda: run_jobs(cases, work, cuda, log, report["failed"]))
        step("training", lambda: run_training(cases["2 mm"], work, not cuda, log))
    report["seconds"] = round(time.perf_counter() - began, 1)
    (args.out / "gpu-check.json").write_text(json.dumps(report, indent=1, default=str))
    if report["failed"]:
        log("gpu-check FAILED: " + "; ".join(report["failed"]))
        return 1
    log(f"gpu-check passed in {report['seconds']:.0f} s ({report['device']}); {args.out / 'gpu-check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
