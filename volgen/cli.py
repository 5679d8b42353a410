"""The `volgen` command: parses, calls the library, prints. No model or image logic lives here."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from volgen import __version__
from volgen.errors import InputError, VolgenError


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_phantom(sub) -> None:
    p = sub.add_parser(
        "phantom", help="generate phantom brain cases with exact ground truth",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Procedural brain cases built on the MNI152 maps nilearn ships: four MR contrasts (t1n, t1c, "
                    "t2w, t2f), BraTS labels, the healthy twin of each tumour case, dynamic FDG PET with its input "
                    "function and true Ki/V maps, and a PNG montage. Deterministic per seed.",
        epilog="example:\n  volgen phantom --n 20 --seed 1 --spacing 2 --out data/phantoms\n"
               "  -> data/phantoms/phantom-s1-0000/phantom-s1-0000-t1n.nii.gz, ...")
    p.add_argument("--n", type=_positive_int, default=1, help="number of cases (default 1)")
    p.add_argument("--out", required=True, type=Path, help="output folder; one sub-folder per case")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    p.add_argument("--start", type=int, default=0, help="index of the first case (default 0), to extend a corpus")
    p.add_argument("--spacing", type=int, choices=(1, 2), default=2, help="voxel size in mm (default 2)")
    p.add_argument("--no-tumour", action="store_true", help="healthy cases only")
    p.add_argument("--no-pet", action="store_true", help="skip the dynamic PET study")
    p.add_argument("--dose", type=float, default=1.0, help="relative PET dose; higher is less noisy (default 1)")
    p.add_argument("--noiseless-pet", action="store_true", help="PET frames without Poisson noise")
    p.add_argument("--jitter", type=float, default=0.05, help="relative T1/T2/PD jitter per case (default 0.05)")
    p.add_argument("--no-montage", action="store_true", help="skip the PNG montage")
    p.add_argument("--overwrite", action="store_true", help="replace existing case folders")
    p.set_defaults(run=_run_phantom)


def _run_phantom(args) -> int:
    from volgen.phantom import PhantomSpec, generate_corpus
    from volgen.phantom.mri import MRISpec
    from volgen.phantom.pet import PetSpec

    if args.dose <= 0:
        raise InputError(None, f"--dose must be positive, got {args.dose}")
    pet = None if args.no_pet else PetSpec(dose=None if args.noiseless_pet else args.dose)
    spec = PhantomSpec(spacing=args.spacing, tumour=not args.no_tumour, pet=pet,
                       mri=dataclasses.replace(MRISpec(), jitter=args.jitter))
    paths = generate_corpus(args.n, args.out, seed=args.seed, spec=spec, overwrite=args.overwrite,
                            start=args.start, montage=not args.no_montage)
    print(f"wrote {len(paths)} case{'s' if len(paths) > 1 else ''} to {args.out}")
    for path in paths[:3]:
        print(f"  {path}")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="PSNR, SSIM, MAE, MSE, NRMSE (and Dice) of a prediction against a reference",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare a predicted volume with a reference on the same grid, over the whole volume and inside "
                    "each mask (non-zero voxels). Prints a table and writes it as JSON.",
        epilog="example:\n  volgen evaluate --pred out/case-t1c.nii.gz --ref case/case-t1c.nii.gz \\\n"
               "      --mask case/case-brainmask.nii.gz --mask tumour=case/case-seg.nii.gz")
    p.add_argument("--pred", required=True, type=Path, help="predicted volume (NIfTI)")
    p.add_argument("--ref", required=True, type=Path, help="reference volume (NIfTI)")
    p.add_argument("--mask", action="append", default=[], metavar="[NAME=]PATH",
                   help="region mask, non-zero voxels; repeatable; NAME defaults to the file name")
    p.add_argument("--dice", metavar="LABELS", help="also Dice of label maps, e.g. 1,2,3")
    p.add_argument("--data-range", type=float, help="intensity range for PSNR/SSIM (default: the reference's)")
    p.add_argument("--resample", action="store_true", help="resample the prediction onto the reference grid")
    p.add_argument("--json", type=Path, help="JSON output (default: <pred>-metrics.json beside the prediction)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing JSON output")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args) -> int:
    from volgen.evaluate import evaluate_files, format_table, to_json_safe
    from volgen.io.atomic import atomic_path, prepare_output
    from volgen.io.nifti import volume_name

    out = args.json or args.pred.with_name(volume_name(args.pred) + "-metrics.json")
    prepare_output(out, overwrite=args.overwrite)  # refuse before computing anything
    masks = {}
    for item in args.mask:
        name, _, path = item.rpartition("=")
        masks[name or volume_name(path)] = Path(path)
    labels = [int(v) for v in args.dice.split(",")] if args.dice else None
    report = evaluate_files(args.pred, args.ref, masks, labels=labels, data_range=args.data_range,
                            resample=args.resample)
    print(format_table(report))
    with atomic_path(out, overwrite=args.overwrite) as tmp:
        tmp.write_text(json.dumps(to_json_safe(report), indent=1))
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="volgen", description="Diffusion-based synthesis of 3D medical volumes.")
    parser.add_argument("--version", action="version", version=f"volgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_phantom(sub)
    _add_evaluate(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except VolgenError as exc:
        print(f"volgen: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("volgen: interrupted; no partial output was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
