"""The `volgen` command: parses, calls the library, prints. No model or image logic lives here."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path

from volgen import __version__
from volgen.errors import InputError, VolgenError, VolgenWarning


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _subcommand(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    """A sub-command whose description and example epilog keep their line breaks."""
    return sub.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def _add_phantom(sub) -> None:
    p = _subcommand(
        sub, "phantom", help="generate phantom brain cases with exact ground truth",
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
    p.add_argument("--pet-beds", type=_positive_int, default=1, metavar="N",
                   help="scan the PET in N overlapping bed positions, 6 passes with gaps for bed motion, one 4D file "
                        "and sidecar per bed (<case>-bed1-pet.nii.gz, ...); default 1: one dynamic scan")
    p.add_argument("--pet-focal", action="store_true",
                   help="add a hot (K1 x2.5) and a cold (x0.3) spot in healthy brain to the PET study")
    p.add_argument("--pet-tumour-uptake", metavar="LOW,HIGH",
                   help="draw each case's tumour K1 (so Ki) scale log-uniformly in [LOW, HIGH] (default: 1)")
    p.add_argument("--jitter", type=float, default=0.05, help="relative T1/T2/PD jitter per case (default 0.05)")
    p.add_argument("--no-montage", action="store_true", help="skip the PNG montage")
    p.add_argument("--pet-bids", type=Path, metavar="DIR",
                   help="also write each PET study as a PET-BIDS dataset in DIR: sub-<label>/pet/sub-<label>_pet.nii.gz, "
                        "_pet.json, _recording-manual_blood.tsv/.json")
    p.add_argument("--overwrite", action="store_true", help="replace existing case folders")
    p.set_defaults(run=_run_phantom)


def _run_phantom(args) -> int:
    from volgen.phantom import PhantomSpec, generate_corpus
    from volgen.phantom.mri import MRISpec
    from volgen.phantom.pet import PetSpec

    if args.dose <= 0:
        raise InputError(None, f"--dose must be positive, got {args.dose}")
    if args.pet_beds > 1 and args.pet_bids:
        raise InputError(args.pet_bids, "--pet-bids writes one dynamic scan per subject: not with --pet-beds")
    uptake = None
    if args.pet_tumour_uptake:
        try:
            uptake = tuple(float(v) for v in args.pet_tumour_uptake.split(","))
        except ValueError:
            uptake = ()
        if len(uptake) != 2 or not 0 < uptake[0] <= uptake[1]:
            raise InputError(None, f"--pet-tumour-uptake must be LOW,HIGH with 0 < LOW <= HIGH, got "
                                   f"{args.pet_tumour_uptake}")
    pet = None if args.no_pet else PetSpec(dose=None if args.noiseless_pet else args.dose, beds=args.pet_beds,
                                           focal=args.pet_focal, lesion_k1_range=uptake)
    spec = PhantomSpec(spacing=args.spacing, tumour=not args.no_tumour, pet=pet,
                       mri=dataclasses.replace(MRISpec(), jitter=args.jitter))
    paths = generate_corpus(args.n, args.out, seed=args.seed, spec=spec, overwrite=args.overwrite,
                            start=args.start, montage=not args.no_montage, pet_bids=args.pet_bids)
    print(f"wrote {len(paths)} case{'s' if len(paths) > 1 else ''} to {args.out}")
    for path in paths[:3]:
        print(f"  {path}")
    return 0


def _add_evaluate(sub) -> None:
    p = _subcommand(
        sub, "evaluate", help="PSNR, SSIM, MAE, MSE, NRMSE (and Dice) of a prediction against a reference",
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
    p.add_argument("--normalize", action="store_true",
                   help="put the reference on [0, 1] first, by its head median as volgen's preprocessing does: the "
                        "scale volgen writes synthesised contrasts in (to score one against the acquired contrast)")
    p.add_argument("--contrast", help="the reference's MRI contrast for --normalize (default: from its file name)")
    p.add_argument("--json", type=Path, help="JSON output (default: <pred>-metrics.json beside the prediction)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing JSON output")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args) -> int:
    from volgen.evaluate import evaluate_files, format_table, to_json_safe
    from volgen.io.atomic import atomic_path, prepare_output
    from volgen.io.nifti import volume_name

    out = args.json or args.pred.with_name(volume_name(args.pred) + "-metrics.json")
    keep = out.exists() and not args.overwrite       # a re-run still prints its table; the JSON is kept
    if not keep:
        prepare_output(out, overwrite=args.overwrite)  # refuse an unwritable folder before computing anything
    masks = {}
    for item in args.mask:
        name, _, path = item.rpartition("=")
        masks[name or volume_name(path)] = Path(path)
    labels = [int(v) for v in args.dice.split(",")] if args.dice else None
    report = evaluate_files(args.pred, args.ref, masks, labels=labels, data_range=args.data_range,
                            resample=args.resample, normalize=args.normalize,
                            contrast=args.contrast)
    print(format_table(report))
    if keep:
        print(f"volgen: note: {out} exists and was kept; pass --overwrite to replace it", file=sys.stderr)
        return 0
    with atomic_path(out, overwrite=args.overwrite) as tmp:
        tmp.write_text(json.dumps(to_json_safe(report), indent=1))
    print(f"wrote {out}")
    return 0


def _add_sampling_args(p, *, backbone: bool = True) -> None:
    """The sampling options; `backbone=False` for a job with one shipped model (patlak's PET prior)."""
    g = p.add_argument_group("model and sampling")
    g.add_argument("--model", metavar="NAME|PATH", help="registered model name or model folder "
                   "(default: the shipped module for this job; see `volgen models`)")
    if backbone:
        g.add_argument("--backbone", choices=("wavelet", "latent"), default="wavelet",
                       help="which shipped backbone's module to use when --model is not given (default wavelet)")
    g.add_argument("--sampler", choices=("ddim", "ddpm", "dpm++", "euler"),
                   help="default: ddim (euler for a rectified-flow backbone)")
    g.add_argument("--steps", type=_positive_int,
                   help="sampling steps (default: 10 on a GPU; on the CPU the 5-step sampler's first two timesteps, "
                        "800 and 400, for a posterior mean: the same mean as 5 steps)")
    g.add_argument("--samples", type=_positive_int, metavar="K",
                   help="samples drawn as one batch; the uncertainty map beside each output is made from their "
                        "spread: the expected absolute error where the model has an error model (the shipped "
                        "modules), else the spread itself (default 2 on the CPU, 8 on a GPU; 1 writes no "
                        "uncertainty)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="network arithmetic: auto is bf16 on a CPU with native bf16 (faster, the same mean to what "
                        "matters), fp32 elsewhere")
    g.add_argument("--estimate", choices=("mean", "sample"), default="mean",
                   help="mean: the posterior mean, for measurements and segmentation (default); sample: one draw, "
                        "for augmentation (lesion insertion, and synthesis on a grid finer than the model's, give "
                        "it the scan's noise grain)")
    g.add_argument("--guidance", type=float, default=1.0,
                   help="conditioning strength: 1 as trained, 0 the bare backbone, >1 stronger (default 1)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same output")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: a GPU when there is one)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _sampling(args) -> dict:
    return {"model": args.model, "backbone": getattr(args, "backbone", "wavelet"), "sampler": args.sampler,
            "steps": args.steps,
            "samples": args.samples, "estimate": args.estimate, "precision": args.precision,
            "guidance": args.guidance, "seed": args.seed, "device": args.device, "progress": not args.no_progress}


def _print_seconds(info: dict) -> None:
    seconds = info.get("seconds", {})
    print("  " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + f" (total {sum(seconds.values()):.1f} s)")


CONTRAST_FILE_OPTIONS = {"t1n": ("--t1n", "--t1"), "t1c": ("--t1c", "--t1ce"), "t2w": ("--t2w", "--t2"),
                         "t2f": ("--t2f", "--flair")}


def _add_synthesize(sub) -> None:
    p = _subcommand(
        sub, "synthesize", help="synthesise missing MRI contrasts of a case (or a folder of cases)",
        description="Synthesise the MRI contrast(s) a case lacks from those it has, with one conditioning module "
                    "for any subset. CASE is a BraTS-layout case folder (<case>/<case>-t1n.nii.gz ...), a folder "
                    "of such cases (a batch: a bad case is reported and skipped), or give the files with --t1n "
                    "--t2w ... Writes OUT/<case>/<case>-<target>.nii.gz on the source grid (affine and header kept; "
                    "float32 on [0, 1], the head's median at a fixed level per contrast), a PNG montage and a JSON sidecar (model, sha256, "
                    "sampler, steps, seed, timings).",
        epilog="examples:\n"
               "  volgen synthesize --cond t1,t2,flair data/BraTS-GLI-00001-000 -o out\n"
               "      -> out/BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1c.nii.gz (+ -synthesis.png, .json)\n"
               "  volgen synthesize data/ -o out                   # every case folder; finds what is missing\n"
               "  volgen synthesize --t1 a-t1.nii.gz --flair a-flair.nii.gz --target t2w -o out")
    p.add_argument("case", nargs="?", type=Path, help="case folder, or a folder of case folders")
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder (one sub-folder per case)")
    p.add_argument("--cond", help="contrasts to condition on, e.g. t1n,t2w,t2f or t1,t2,flair "
                                  "(default: every contrast the case has)")
    p.add_argument("--target", help="contrast(s) to synthesise (default: every one not in --cond)")
    files = p.add_argument_group("explicit files (instead of CASE)")
    for contrast, flags in CONTRAST_FILE_OPTIONS.items():
        files.add_argument(*flags, dest=f"file_{contrast}", type=Path, metavar="PATH", help=f"{contrast} NIfTI file")
    files.add_argument("--name", help="case name for explicit files (default: from the first file's name)")
    p.add_argument("--no-bias-correction", dest="bias_correction", action="store_false",
                   help="condition on the images as given (default: their smooth intensity non-uniformity, "
                        "estimated jointly over the conditions, is divided out first; the files are not changed)")
    _add_sampling_args(p)
    p.set_defaults(run=_run_synthesize)


def _run_synthesize(args) -> int:
    from volgen.api import run_synthesis
    from volgen.io.contrasts import case_from_paths, find_cases, parse_contrasts

    files = {c: getattr(args, f"file_{c}") for c in CONTRAST_FILE_OPTIONS if getattr(args, f"file_{c}")}
    if files and args.case:
        raise InputError(args.case, "give either a case folder or explicit files (--t1n ...), not both")
    if not files and args.case is None:
        raise InputError(None, "no input: give a case folder or files with --t1n/--t1c/--t2w/--t2f")
    cond = parse_contrasts(args.cond) if args.cond else None
    target = parse_contrasts(args.target) if args.target else None
    settings = {**_sampling(args), "bias_correction": args.bias_correction}
    if files:
        cases = [case_from_paths(files, name=args.name)]
    else:   # a case folder gives itself, a folder of cases gives each one
        cases = find_cases(args.case) if args.case.is_dir() else [args.case]
    if len(cases) == 1:
        result = run_synthesis(cases[0], cond=cond, target=target, out=args.out, overwrite=args.overwrite,
                               **settings)
        for path in result.info["outputs"].values():
            print(f"wrote {path}")
        print(f"wrote {result.info['montage']}")
        _print_seconds(result.info)
        return 0
    return _run_batch(cases, args, cond, target, settings)


def _run_batch(cases, args, cond, target, settings) -> int:
    """Every case (split across processes under torchrun / accelerate launch); a failing case is reported and
    skipped; one summary, and exit 1 if any failed."""
    from volgen.api import run_synthesis
    from volgen.batch import run_batch, summary

    outcomes = run_batch(cases, lambda case: getattr(case, "name", str(case)),
                         lambda case: run_synthesis(case, cond=cond, target=target, out=args.out,
                                                    overwrite=args.overwrite, **{**settings, "progress": False}),
                         progress=not args.no_progress)
    return summary(outcomes, "synthesised", args.out)


def _add_super_resolve(sub) -> None:
    p = _subcommand(
        sub, "super-resolve", help="thick slices to thin ones (through-plane super-resolution)",
        description="Split each slice along --axis into --factor thin slices with the super-resolution module. "
                    "Data consistency: the mean of every FACTOR output slices equals the input slice to float32 "
                    "rounding (relative error below 1e-5, recorded in the sidecar), and no voxel goes below zero "
                    "(below the input's minimum where that is negative). The output keeps the input's field of "
                    "view, orientation, in-plane voxels, units and dtype (integers rounded keeping each slice's "
                    "mean). The module runs on its own 2 mm grid and the result is brought to the output's; the "
                    "shipped module was trained for 4x along z on 2 mm voxels (8 mm slices), and another factor "
                    "is run with a warning.",
        epilog="example:\n  volgen super-resolve case-t2f-thick.nii.gz -o case-t2f-sr.nii.gz --factor 4 --axis z\n"
               "      -> case-t2f-sr.nii.gz, case-t2f-sr.png, case-t2f-sr.json")
    p.add_argument("input", type=Path, help="thick-slice NIfTI volume, or a folder of them (a batch)")
    p.add_argument("-o", "--out", required=True, type=Path,
                   help="output NIfTI (.nii.gz); for a folder, an output folder (<name>-sr.nii.gz each)")
    p.add_argument("--factor", type=int, default=4, help="slices per input slice, at least 2 (default 4)")
    p.add_argument("--axis", choices=("x", "y", "z"), default="z",
                   help="world axis of the thick slices: x left-right, y front-back, z up-down (default z)")
    p.add_argument("--contrast", help="MRI contrast of the input (default: from the file name, else t2f)")
    _add_sampling_args(p)
    p.set_defaults(run=_run_super_resolve)


def _run_super_resolve(args) -> int:
    from volgen.api import run_super_resolution

    if args.input.is_dir():
        from volgen.batch import run_batch, summary
        from volgen.io.nifti import is_nifti_path, volume_name

        files = sorted(p for p in args.input.iterdir() if is_nifti_path(p))
        if not files:
            raise InputError(args.input, "no .nii or .nii.gz files in this folder")
        outcomes = run_batch(files, volume_name, lambda path: run_super_resolution(
            path, factor=args.factor, axis=args.axis, contrast=args.contrast,
            out=args.out / f"{volume_name(path)}-sr.nii.gz", overwrite=args.overwrite,
            **{**_sampling(args), "progress": False}), progress=not args.no_progress)
        return summary(outcomes, "super-resolved", args.out)

    result = run_super_resolution(args.input, factor=args.factor, axis=args.axis, contrast=args.contrast,
                                  out=args.out, overwrite=args.overwrite, **_sampling(args))
    info = result.info
    print(f"wrote {args.out}: {info['input_spacing']} -> {info['output_spacing']} mm; "
          f"consistency error {info['consistency_error']:.1e} of the input range")
    _print_seconds(info)
    return 0


def _add_inpaint(sub) -> None:
    p = _subcommand(
        sub, "inpaint", help="fill a masked region with healthy tissue, or grow a lesion inside it",
        description="Re-synthesise the voxels under MASK (non-zero, same grid as IN): --mode healthy fills them "
                    "with healthy tissue (pseudo-healthy), --mode lesion grows a lesion inside. Every voxel "
                    "outside the mask is copied from IN unchanged (same dtype, affine and header). Given a case "
                    "folder and a BraTS label map (1 necrotic core, 2 oedema, 3 enhancing tumour), --mode lesion "
                    "draws that tumour into every contrast of the case at once and writes a new BraTS-layout case "
                    "(its contrasts and the labels as its -seg) into the folder -o names; only the labels and a "
                    "one-voxel border around them change ('volgen lesion-mask' draws a label map), and with "
                    "--mass-effect the tissue the tumour pushes aside.",
        epilog="examples:\n  volgen inpaint case-t2f.nii.gz --mask case-seg.nii.gz -o case-t2f-healthy.nii.gz\n"
               "  volgen inpaint healthy-t2f.nii.gz --mask blob.nii.gz --mode lesion -o with-lesion-t2f.nii.gz\n"
               "  volgen inpaint healthy-case/ --mask labels.nii.gz --mode lesion -o healthy-case-lesion "
               "--mass-effect 3")
    p.add_argument("input", type=Path, help="NIfTI volume, a case folder (with --mode lesion and a label map), or a "
                                            "folder of BraTS-layout cases (a batch)")
    p.add_argument("--mask", type=Path, help="mask NIfTI on the same grid (non-zero = inpaint); for a folder of "
                                            "cases, each case's seg is its mask")
    p.add_argument("-o", "--out", required=True, type=Path,
                   help="output NIfTI (.nii.gz); for a folder, an output folder (<case>/<case>-<contrast>-<mode>)")
    p.add_argument("--mode", choices=("healthy", "lesion"), default="healthy", help="default healthy")
    p.add_argument("--contrast", help="MRI contrast of the input (default: from the file name)")
    p.add_argument("--mass-effect", type=float, default=0.0, metavar="MM",
                   help="with --mode lesion on a case folder: push the tissue around the tumour this far aside at "
                        "its edge, fading out within 3 tumour radii and at the brain's edge (default 0: none)")
    _add_sampling_args(p)
    p.set_defaults(run=_run_inpaint)


def _run_inpaint(args) -> int:
    from volgen.api import run_inpainting

    if args.input.is_dir() and args.mode == "lesion" and args.mask is not None:
        return _run_insert_lesion(args)
    if args.mass_effect:
        raise InputError(args.input, "--mass-effect needs --mode lesion, a case folder and a label map (--mask)")
    if args.input.is_dir():
        return _run_inpaint_batch(args)
    if args.mask is None:
        raise InputError(args.input, "--mask is required for a single volume")

    result = run_inpainting(args.input, args.mask, mode=args.mode, contrast=args.contrast, out=args.out,
                            overwrite=args.overwrite, **_sampling(args))
    print(f"wrote {args.out} ({result.info['mask_voxels']} voxels inpainted, mode {args.mode})")
    _print_seconds(result.info)
    return 0


def _add_lesion_mask(sub) -> None:
    p = _subcommand(
        sub, "lesion-mask", help="draw a plausible tumour label map for a case (to insert with inpaint --mode lesion)",
        description="A BraTS label map (1 necrotic core, 2 oedema, 3 enhancing tumour) on the case's grid, drawn "
                    "from the tumours the shipped lesion module was trained on (the phantom glioma: size, shape, "
                    "compartments, a supratentorial place in grey and white matter estimated from the case's own "
                    "intensities). A tumour the case already has (its -seg) is avoided.",
        epilog="example:\n  volgen lesion-mask healthy-case/ -o labels.nii.gz --seed 3\n"
               "  volgen inpaint healthy-case/ --mask labels.nii.gz --mode lesion -o healthy-case-lesion")
    p.add_argument("case", type=Path, help="a case folder (BraTS layout)")
    p.add_argument("-o", "--out", required=True, type=Path, help="output label map (.nii.gz)")
    p.add_argument("--seed", type=int, default=0, help="which tumour (default 0)")
    p.add_argument("--radius-mm", type=float, help="the enhancing tumour's radius, 8 to 22 mm as in the module's "
                                                   "training (default: drawn by the seed)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=_run_lesion_mask)


def _run_lesion_mask(args) -> int:
    from volgen.api import lesion_mask

    volume = lesion_mask(args.case, out=args.out, seed=args.seed, radius_mm=args.radius_mm, overwrite=args.overwrite)
    tumour = volume.meta["tumour"]
    volumes = ", ".join(f"{k} {v:.1f}" for k, v in tumour["volumes_ml"].items())
    print(f"wrote {args.out}: tumour of radius {tumour['radius_mm']:.0f} mm at voxel {tumour['centre_voxel']} "
          f"(mL: {volumes})")
    return 0


def _add_patlak(sub) -> None:
    p = _subcommand(
        sub, "patlak", help="Patlak Ki and V maps from dynamic PET and its plasma input function",
        description="Voxel-wise Patlak: Ki (net influx rate, 1/min) and V (intercept, mL/mL) from the frames "
                    "starting at or after t*. PET follows PET-BIDS: a 4D NIfTI with its _pet.json (FrameTimesStart, "
                    "FrameDuration in s, Units, ImageDecayCorrected); the input is a _blood.tsv (time in s, "
                    "plasma_radioactivity, metabolite_parent_fraction applied when present; units from its .json), "
                    "a TSV with time and AIF columns, or the phantom's -pet-input.tsv. Writes "
                    "OUT/<stem>_model-patlak_meas-Ki_mimap.nii.gz and _meas-V_ on the PET grid, their standard "
                    "errors as _meas-KiSE_ and _meas-VSE_ (ls; for diffusion the expected absolute error as "
                    "_meas-KiErr_, or the spread over the samples as _meas-KiSD_ for a prior without a Patlak "
                    "calibration), a montage, a derivative JSON (t*, frames, weights, units, assumptions) and the "
                    "folder's BIDS dataset_description.json when it has none.",
        epilog="examples:\n"
               "  volgen patlak sub-01_pet.nii.gz --input sub-01_blood.tsv -o derivatives/patlak\n"
               "  volgen patlak case-pet.nii.gz --input case-blood.tsv --method smoothed --mask case-brainmask.nii.gz "
               "-o out\n"
               "  volgen patlak scan.nii.gz --input aif.tsv --frames frames.tsv --tstar 30 --weights duration -o out\n"
               "  volgen patlak sub-01_bed-1_pet.nii.gz sub-01_bed-2_pet.nii.gz --input sub-01_blood.tsv -o out")
    p.add_argument("pet", type=Path, nargs="+",
                   help="4D dynamic PET NIfTI (decay corrected); a study acquired bed by bed: one file per bed, "
                        "each with its own _pet.json, merged on one grid (each voxel fitted on its bed's frames)")
    p.add_argument("--input", required=True, type=Path, help="plasma input function TSV")
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    p.add_argument("--method", choices=("ls", "smoothed", "diffusion"), default="ls",
                   help="ls: voxel-wise least squares (default); smoothed: ls maps smoothed inside the mask; "
                        "diffusion: the shipped PET prior (volgen-pet-prior-2mm) with the Patlak model as data "
                        "consistency")
    p.add_argument("--tstar", type=float, help="minutes; default: the first frame starting at or after 20 min")
    p.add_argument("--weights", choices=("none", "duration"), default="none", help="frame weights (default none)")
    p.add_argument("--mask", type=Path, help="fit inside this mask only (non-zero; same grid as the PET)")
    p.add_argument("--frames", type=Path, help="frame timing instead of the PET's sidecar (JSON or TSV)")
    p.add_argument("--fwhm", type=float, help="smoothing FWHM in mm for --method smoothed (default: chosen on "
                                              "training phantoms)")
    _add_sampling_args(p, backbone=False)
    p.set_defaults(run=_run_patlak)


def _run_patlak(args) -> int:
    from volgen.api import run_patlak

    settings = _sampling(args) if args.method == "diffusion" else {}
    result = run_patlak(args.pet, input=args.input, out=args.out, overwrite=args.overwrite, method=args.method,
                        tstar=args.tstar, weights=args.weights, mask=args.mask, frames=args.frames, fwhm=args.fwhm,
                        **settings)
    for path in result.info["outputs"].values():
        print(f"wrote {path}")
    info = result.info
    print(f"t* {info['tstar_min']:g} min, {len(info['frames_used'])} frames, method {info['method']}")
    _print_seconds(info)
    return 0


def _run_insert_lesion(args) -> int:
    from volgen.api import run_lesion_insertion

    if args.mass_effect < 0:
        raise InputError(args.input, f"--mass-effect must be 0 or more mm, got {args.mass_effect:g}")
    result = run_lesion_insertion(args.input, args.mask, out=args.out, overwrite=args.overwrite,
                                  mass_effect_mm=args.mass_effect, **_sampling(args))
    counts = result.info["label_voxels"]
    print(f"wrote {args.out}: {', '.join(result.info['contrasts'])} and seg with the tumour inserted "
          f"({counts['necrotic']} necrotic, {counts['oedema']} oedema, {counts['enhancing']} enhancing voxels)")
    _print_seconds(result.info)
    return 0


def _run_inpaint_batch(args) -> int:
    from volgen.api import run_inpainting
    from volgen.batch import run_batch, summary
    from volgen.io.contrasts import find_cases

    contrast = args.contrast or "t2f"

    def work(case):
        if contrast not in case.paths or "seg" not in case.paths:
            raise InputError(case.name, f"needs a {contrast} image and a seg mask")
        run_inpainting(case.paths[contrast], case.paths["seg"], mode=args.mode, contrast=contrast,
                       out=args.out / case.name / case.naming.file_name(case.name, contrast, f"-{args.mode}.nii.gz"),
                       overwrite=args.overwrite, **{**_sampling(args), "progress": False})

    outcomes = run_batch(find_cases(args.input), lambda case: case.name, work, progress=not args.no_progress)
    return summary(outcomes, "inpainted", args.out)


def _add_calibrate(sub) -> None:
    p = _subcommand(
        sub, "calibrate", help="fit a module's uncertainty maps to the error it makes, on cases it never trained on",
        description="Fit the error model that turns a module's spread over its samples into the expected absolute "
                    "error of its posterior mean (what the shipped modules' uncertainty maps hold). Each case under "
                    "--cases is estimated as the jobs estimate it, at their defaults on this device: synthesis and "
                    "super-resolution need the four contrasts, inpainting healthy twins as well (phantoms). Prints "
                    "how well the spread and the fitted map rank the error; --write stores the fit in the model "
                    "folder's config.json (the weights are untouched).",
        epilog="example:\n  volgen calibrate runs/my-vcm/model --cases my_calibration_cases/ --write")
    p.add_argument("model", help="model name or folder (a fine-tuned module: runs/<run>/model)")
    p.add_argument("--cases", required=True, type=Path, help="folder of BraTS-layout cases the module never saw")
    p.add_argument("--task", choices=("synthesis", "super_resolution", "inpainting"),
                   help="the module's task (default: from its training metadata)")
    p.add_argument("--contrasts", default="t1n,t1c,t2w,t2f", help="target contrasts to fit (default all four)")
    p.add_argument("--max-cases", type=_positive_int, default=12, help="cases to use (default 12)")
    p.add_argument("--write", action="store_true", help="store the fit in the model's config.json")
    p.set_defaults(run=_run_calibrate)


def _run_calibrate(args) -> int:
    from volgen.calibrate import calibrate
    from volgen.io.contrasts import parse_contrasts

    fitted = calibrate(args.model, args.cases, task=args.task, contrasts=parse_contrasts(args.contrasts),
                       max_cases=args.max_cases, write=args.write)
    if not args.write:
        print(json.dumps(fitted.to_dict(), indent=1))
    return 0


def _add_models(sub) -> None:
    p = _subcommand(sub, "models", help="list the registered models with their sha256 and card",
                       description="The models volgen can load by name: shipped defaults and any registered.",
                       epilog="example:\n  volgen models\n  volgen models --json")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=_run_models)


def _run_models(args) -> int:
    from volgen import hub

    models = hub.list_models()
    if args.json:
        print(json.dumps(models, indent=1))
        return 0
    for m in models:
        print(f"{m['name']}  [{m.get('model_type', '?')}]  {m.get('description', '')}\n"
              f"    sha256 {m.get('sha256')}\n    card   {m.get('card')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="volgen", description="Diffusion-based synthesis of 3D medical volumes.")
    parser.add_argument("--version", action="version", version=f"volgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_phantom(sub)
    _add_evaluate(sub)
    _add_synthesize(sub)
    _add_super_resolve(sub)
    _add_inpaint(sub)
    _add_lesion_mask(sub)
    _add_patlak(sub)
    _add_models(sub)
    _add_calibrate(sub)
    from volgen.training.cli import add_parser as _add_train
    _add_train(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """volgen's own warnings as one line on stderr; any other the usual way."""
    if issubclass(category, VolgenWarning):
        print(f"volgen: warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv=None) -> int:
    from volgen import provenance

    warnings.showwarning = _show_warning
    argv = sys.argv[1:] if argv is None else list(argv)
    provenance.COMMAND = argv                      # recorded in every sidecar
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except VolgenError as exc:
        print(f"volgen: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("volgen: interrupted; no partial output was kept", file=sys.stderr)
        return 130


def entry() -> None:
    """The `volgen` command: main(), then, in a single process, an exit that skips the interpreter's teardown
    (about a second of freeing torch's and MONAI's modules, after every output is written and closed)."""
    rc = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:       # torchrun / accelerate: let the process group shut down
        raise SystemExit(rc)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    entry()
