"""Write volgen/pretrained/<name>/README.md, a shipped model's card, from its config, its run and the benchmark.

    python scripts/tools/release/write_model_card.py volgen-vcm-synthesis-2mm --run runs/vcm-synthesis \
        --config vcm_synthesis [--results bench_out/quality/results.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import yaml

from volgen import hub
from volgen.io.preprocess import MEDIAN_LEVEL
from volgen.training.config import config_path

INTENSITY_REFERENCE = ("the head's median at a fixed level per contrast: " +
                       ", ".join(f"{c} {v}" for c, v in MEDIAN_LEVEL.items()) + " on [0, 1]")

USES = {
    "backbone": "a frozen prior for volgen's conditioning modules (synthesis, super-resolution, inpainting)",
    "synthesis": "synthesising a missing MRI contrast (t1n, t1c, t2w or t2f) from any subset of the others, e.g. to "
                 "complete inputs for segmentation training",
    "super_resolution": "restoring isotropic 2 mm volumes from 4x thick-slice (8 mm) acquisitions along one axis",
    "inpainting": "filling a masked region with healthy-looking tissue (pseudo-healthy), or growing a lesion inside "
                  "a mask, for augmentation",
    "lesion": "drawing a tumour given by a BraTS label map (1 necrotic core, 2 oedema, 3 enhancing tumour) into every "
              "contrast of a healthy case, to make labelled training cases (`volgen inpaint CASE --mask LABELS "
              "--mode lesion`, `volgen lesion-mask`, `volgen.augment.InsertLesion(label_key=...)`)",
}
TASK_ROWS = {"synthesis": ["t1n synthesis", "t1c synthesis", "t2w synthesis", "t2f synthesis"],
             "super_resolution": ["4x super-resolution (t2f)"],
             "inpainting": ["pseudo-healthy inpainting (t2f)", "lesion inpainting (t2f)"]}


def _corpus(root: str) -> str:
    """"N training cases (seeds ..., `root`)", counted from the case folders under root (phantom-s<seed>-<index>)."""
    folders = [p.name for p in Path(root).iterdir() if p.is_dir()] if Path(root).is_dir() else []
    seeds = sorted({int(m.group(1)) for name in folders if (m := re.match(r"phantom-s(\d+)-\d+$", name))})
    if not seeds:
        return f"the training cases under `{root}`"
    return f"{len(folders)} training cases (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}, `{root}`)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--run", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--results", default="bench_out/quality/results.json")
    parser.add_argument("--limits", default="", help="further limits seen in this model's outputs")
    parser.add_argument("--rows", help="the results tasks whose rows to show, comma-separated (a comma followed by "
                                       "a space belongs to the name; default: the module's task)")
    args = parser.parse_args()
    entry = json.loads(hub.REGISTRY_FILE.read_text())[args.name]
    model = hub.from_pretrained(args.name)
    saved = hub.read_config(hub.PRETRAINED_DIR / args.name)
    # The run's own config records its overrides (lr, steps, data options); the packaged one is the fallback.
    recorded = Path(args.run) / "run-config.json"
    run_config = json.loads(recorded.read_text()) if recorded.exists() else \
        yaml.safe_load(config_path(args.config).read_text())
    with open(Path(args.run) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    task = run_config.get("task") if run_config["kind"] == "module" else "backbone"
    params = model.count_trainable() if hasattr(model, "count_trainable") else \
        sum(p.numel() for p in model.parameters())
    size = (hub.PRETRAINED_DIR / args.name / hub.WEIGHTS_FILE).stat().st_size / 2 ** 20
    train, data = run_config.get("train", {}), run_config.get("data", {})
    lines = [
        f"# {args.name}", "",
        f"{entry['description']}.", "",
        f"- model type: `{entry['model_type']}`; trainable parameters: {params / 1e6:.2f} M; weights: {size:.1f} MiB "
        f"({saved['dtype']} safetensors" + (", large tensors as int8 rows" if saved.get("packing") == "int8" else "")
        + ")",
        f"- sha256: `{entry['sha256']}`",
        f"- load: `volgen.hub.from_pretrained(\"{args.name}\")`", "",
        "## Data", "",
        f"Procedural phantoms from `volgen phantom` (MNI152-based anatomy, random affine and elastic warp, a "
        f"supratentorial tumour with BraTS labels, 3 T signal equations, bias field, Rician noise): "
        f"{_corpus(data.get('root', 'phantoms/train'))}, on the 2 mm RAS grid, intensities scaled per volume to "
        f"[-1, 1] ({INTENSITY_REFERENCE}). Held-out evaluation cases: seed 200, never seen in training.", "",
        "## Recipe", "",
        f"`volgen/configs/{Path(args.config).stem}.yaml`: {saved['metadata'].get('steps')} of {train.get('steps')} planned steps "
        f"(`--resume` continues the run), batch {train.get('batch_size')}, "
        f"{_crops(data.get('crop', []))} {_flips(data)}, AdamW lr {train.get('lr')}"
        + (f" with a {train['lr_schedule']} decay" if train.get("lr_schedule", "constant") != "constant" else "")
        + f", EMA "
        f"{train.get('ema_decay', 0.999)}"
        + (f", timesteps of the {train['sampler_steps']}-step sampler only" if train.get("sampler_steps") else "")
        + f"; last logged loss {float(rows[-1]['loss']):.4f}. Wall time "
        f"{float(rows[-1]['seconds']) / 60:.1f} min on {_machine(saved['metadata'].get('device', 'cpu'))}.", "",
        f"Reproduce: `volgen train {Path(args.config).stem}` (then `--resume` until done, or `--export` for the "
        "newest checkpoint); fine-tune on your own cases with `data.root=YOUR_CASES init_from=" + args.name + "`.",
        "",
        "## Intended use", "",
        f"{USES[task]}. A research tool and a starting point for fine-tuning on your own data.", "",
        "## Limits", "",
        "Trained on phantoms only, at 2 mm, for minutes on a CPU: expect blur and phantom-like texture, and do not "
        "expect it to transfer to real scans without fine-tuning. Not for clinical use or diagnosis."
        + (f" {args.limits}" if args.limits else ""), "",
    ]
    lines += measured(task, args.results, re.split(r",(?! )", args.rows) if args.rows else TASK_ROWS.get(task))
    out = hub.PRETRAINED_DIR / args.name / hub.CARD_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def _machine(device: str) -> str:
    if device == "cpu":
        return "cpu (this repository's machine: 2 CPU cores, no GPU). On a GPU, train the same config larger and longer"
    return f"one {device} (lent for a session)"


def _steps(steps) -> str:
    """The bench records a number, or a phrase when it used the jobs' default timesteps."""
    return f"{steps} sampling steps" if isinstance(steps, int) else str(steps)


def _crops(crop) -> str:
    size = "x".join(str(c) for c in crop)
    return "whole 2 mm volumes" if crop and min(crop) >= 96 else f"random {size} crops"


def _flips(data: dict) -> str:
    """Which mirrors the run drew: older runs mirrored every axis (the config's default before left-right only)."""
    axes = data.get("flip_axes", [0, 1, 2]) if data.get("flip", True) else []
    if not axes:
        return "without flips"
    return "with left-right flips" if list(axes) == [0] else f"with flips along model-grid axes {list(axes)}"


def measured_lesion(path: Path) -> list[str]:
    """The lesion insertion bench (scripts/benchmarks/bench_lesion.py): W1 ratios to the twin's, PSNR, rim, time."""
    r = json.loads(path.read_text())
    contrasts, parts = ("t1n", "t1c", "t2w", "t2f"), ("necrotic", "oedema", "enhancing")
    lines = [f"`scripts/benchmarks/bench_lesion.py` on {r['n']} held-out cases (`{r['cases']}`): each case's own "
             f"labels drawn into its healthy twin by the job (CPU defaults), {r['seconds_per_case']:.1f} s per case for all "
             "four contrasts. 1-Wasserstein distance of the intensities to the real tumours' (all cases pooled), as "
             "a fraction of the healthy twin's (target: one sample at most 0.5 everywhere):", "",
             "| arm | " + " | ".join(f"{c} {p}" for c in contrasts for p in parts) + " |",
             "|---" * (1 + len(contrasts) * len(parts)) + "|"]
    for arm, values in r["w1_ratio_to_twin_pooled"].items():
        lines.append(f"| {arm} | " + " | ".join(f"{values.get(f'{c}_{p}_w1', float('nan')):.2f}" for c in contrasts
                                                for p in parts) + " |")
    lines += ["", "PSNR (dB) inside the labels and their one-voxel border, and the enhancing rim's contrast on t1c "
                  "(mean of the enhancing tumour minus the necrotic core, as a fraction of the real one's):", "",
              "| arm | " + " | ".join(contrasts) + " | t1c rim |", "|---" * (len(contrasts) + 2) + "|"]
    for arm, values in r["mean"].items():
        lines.append(f"| {arm} | " + " | ".join(f"{values[f'{c}_psnr']:.2f}" for c in contrasts) +
                     f" | {values.get('t1c_rim_contrast', float('nan')):.2f} |")
    return lines + [""]


def measured(task: str, results_path: str, rows_tasks: list[str] | None) -> list[str]:
    lines = ["## Measured", ""]
    if task == "lesion":
        return lines + (measured_lesion(Path(results_path)) if Path(results_path).is_file() else
                        ["Not measured yet: run `scripts/benchmarks/bench_lesion.py`."])
    path = Path(results_path)
    if rows_tasks is None or not path.is_file():
        return lines + ["Backbones are measured through the modules on them (see their cards); "
                        "`scripts/benchmarks/bench_sampling.py` times sampling." if task == "backbone" else
                        "Not measured yet: run `scripts/benchmarks/bench_quality.py`."]
    results = json.loads(path.read_text())
    for rows_task in rows_tasks:
        rows = [r for r in results if r["task"] == rows_task]
        if not rows:
            lines += [f"Not measured yet: run `scripts/benchmarks/bench_quality.py` (no '{rows_task}' rows in {path}).", ""]
            continue
        keys = [k for k in ("brain_psnr", "brain_ssim", "tumour_psnr", "mask_psnr", "w1_to_real_tumour",
                            "spearman", "spearman_spread", "spearman_4mm", "consistency", "brain_psnr_t1n",
                            "brain_psnr_t1c", "brain_psnr_t2w", "brain_psnr_t2f", "seconds")
                if any(k in r for r in rows)]
        lines += [f"`scripts/benchmarks/bench_quality.py` on {rows[0].get('cases', '?')} held-out cases, "
                  f"{_steps(rows[0].get('steps', '?'))}, {rows[0].get('samples', 1)} samples per estimate "
                  f"({rows_task}; PSNR in dB on [0, 1], seconds per case):", "",
                  "| method | params | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
        for r in rows:
            lines.append(f"| {r['method']} | {r['trainable_params']} | " +
                         " | ".join(f"{r[k]:.4f}" if k in r else "" for k in keys) + " |")
        lines.append("")
    return lines


if __name__ == "__main__":
    main()
