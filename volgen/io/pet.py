"""Dynamic PET inputs as PET-BIDS has them: the 4D image's `_pet.json` sidecar (frame timing, units, decay
correction) and the arterial input function from a `_blood.tsv` (with its `.json` for units), an input-function TSV
with an `AIF` column, or the phantom's own TSVs. Times come back in minutes (what the kinetics use); every
assumption made (units, columns, metabolite correction) is recorded for the derivative's sidecar."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from volgen.errors import InputError
from volgen.io.nifti import read_volume
from volgen.kinetics import FrameSchedule

# Activity units volgen converts between (to Bq/mL); PET and blood in different units are brought to the PET's.
ACTIVITY_UNITS = {"bq/ml": 1.0, "kbq/ml": 1e3, "mbq/ml": 1e6, "bq/cc": 1.0, "kbq/cc": 1e3, "mbq/cc": 1e6,
                  "nci/ml": 37.0, "uci/ml": 37e3, "µci/ml": 37e3}
TIME_UNITS = {"s": 1.0 / 60.0, "sec": 1.0 / 60.0, "seconds": 1.0 / 60.0, "min": 1.0, "minutes": 1.0}

BIDS_VERSION = "1.10.0"          # what the PET-BIDS files volgen writes declare


@dataclass
class InputFunction:
    time: np.ndarray                  # minutes
    activity: np.ndarray              # plasma activity of the parent tracer, in `units`
    units: str | None
    source: str
    notes: list[str] = field(default_factory=list)


def sidecar_of(path) -> Path:
    """The JSON beside a NIfTI or TSV: x_pet.nii.gz -> x_pet.json, x_blood.tsv -> x_blood.json."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii", ".tsv"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable JSON sidecar ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(path, "JSON sidecar is not an object")
    return data


def read_table(path) -> dict[str, np.ndarray]:
    """A TSV with a header row -> {column: float array} ('n/a' becomes NaN)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    lines = [line.rstrip("\n") for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        raise InputError(path, "a TSV with a header row and at least one data row is expected")
    header = [h.strip() for h in lines[0].split("\t")]
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(header):
            raise InputError(path, f"line {number} has {len(cells)} columns, the header {len(header)}")
        try:
            rows.append([np.nan if c.strip().lower() in ("n/a", "nan", "") else float(c) for c in cells])
        except ValueError:
            raise InputError(path, f"line {number} holds a value that is not a number") from None
    table = np.asarray(rows, dtype=np.float64)
    return {name: table[:, i] for i, name in enumerate(header)}


def activity_scale(units: str | None) -> float | None:
    return ACTIVITY_UNITS.get(str(units).strip().lower().replace(" ", "")) if units else None


def pet_metadata(pet_path, frames_path=None) -> tuple[FrameSchedule, dict]:
    """The frame schedule (minutes) and the sidecar's facts (Units, ImageDecayCorrected) for a 4D PET file.

    `frames_path` (--frames) overrides: a PET-BIDS JSON, or a TSV with frame_start_min/frame_end_min (the
    phantom's) or FrameTimesStart/FrameDuration in seconds."""
    pet_path = Path(pet_path)
    sidecar = sidecar_of(pet_path)
    meta = _read_json(sidecar) if sidecar.is_file() else {}
    source = Path(frames_path) if frames_path else None
    if source is None:
        legacy = pet_path.with_name(pet_path.name.replace(".nii.gz", "").replace(".nii", "") + "-frames.tsv")
        source = sidecar if "FrameTimesStart" in meta else legacy if legacy.is_file() else None
    if source is None:
        raise InputError(pet_path, f"no frame timing: expected {sidecar.name} with FrameTimesStart and FrameDuration "
                                   f"(PET-BIDS, seconds), or give --frames")
    if source.suffix == ".json":
        timing = _read_json(source) if source != sidecar else meta
        if "FrameTimesStart" not in timing or "FrameDuration" not in timing:
            raise InputError(source, "FrameTimesStart and FrameDuration (seconds) are required")
        start = np.asarray(timing["FrameTimesStart"], dtype=np.float64) / 60.0
        end = start + np.asarray(timing["FrameDuration"], dtype=np.float64) / 60.0
    else:
        table = read_table(source)
        if {"frame_start_min", "frame_end_min"} <= set(table):
            start, end = table["frame_start_min"], table["frame_end_min"]
        elif {"FrameTimesStart", "FrameDuration"} <= set(table):
            start = table["FrameTimesStart"] / 60.0
            end = start + table["FrameDuration"] / 60.0
        else:
            raise InputError(source, f"frame table columns {', '.join(table)}: expected frame_start_min and "
                                     f"frame_end_min, or FrameTimesStart and FrameDuration (seconds)")
    if len(start) != len(end) or len(start) == 0 or np.any(end <= start):
        raise InputError(source, "every frame needs a positive duration")
    if np.any(np.diff(start) <= 0) or np.any(start[1:] < end[:-1] - 1e-9):
        bad = int(np.flatnonzero((np.diff(start) <= 0) | (start[1:] < end[:-1] - 1e-9))[0]) + 1
        raise InputError(source, f"frame {bad} starts at {start[bad] * 60:g} s, before frame {bad - 1} ends "
                                 f"({end[bad - 1] * 60:g} s): frame times must increase without overlapping")
    facts = {"frame_source": str(source), "Units": meta.get("Units"),
             "ImageDecayCorrected": meta.get("ImageDecayCorrected")}
    if "SliceTiming" in meta:
        facts.update(slice_timing(sidecar, meta))
    return FrameSchedule(start=start, end=end), facts


SLICE_AXES = {"i": 0, "j": 1, "k": 2}


def slice_timing(sidecar: Path, meta: dict) -> dict:
    """A scanner whose slices are acquired one after another (continuous bed motion): BIDS's `SliceTiming`, each
    slice's time (s) after its frame starts, along `SliceEncodingDirection` (i, j or k; default k). Returned as
    {"slice_offsets_min", "slice_axis"} for the fit, which then gives every slice its own frame times."""
    offsets = meta["SliceTiming"]
    if not isinstance(offsets, list) or not offsets or not all(isinstance(o, (int, float)) for o in offsets):
        raise InputError(sidecar, "SliceTiming must be a list of numbers (seconds after each frame's start)")
    direction = str(meta.get("SliceEncodingDirection", "k"))
    if direction.rstrip("-") not in SLICE_AXES:
        raise InputError(sidecar, f"SliceEncodingDirection '{direction}' is not i, j or k")
    offsets = np.asarray(offsets, dtype=np.float64)
    if np.any(offsets < 0):
        raise InputError(sidecar, "SliceTiming holds a negative offset: each slice is acquired after its frame starts")
    return {"slice_offsets_min": offsets / 60.0, "slice_axis": SLICE_AXES[direction.rstrip("-")]}


def read_dynamic(pet_path, frames_path=None):
    """(4D Volume, frame schedule, sidecar facts) of a dynamic PET file, refused unless it is 4D with one frame per
    entry of its timing and, given SliceTiming, one offset per slice."""
    volume = read_volume(pet_path, allow_4d=True)
    if volume.array.ndim != 4:
        raise InputError(pet_path, f"a 4D dynamic PET is expected, got shape {volume.shape}")
    schedule, facts = pet_metadata(pet_path, frames_path)
    if volume.shape[3] != len(schedule):
        raise InputError(pet_path, f"{volume.shape[3]} frames in the image but {len(schedule)} in "
                                   f"{facts['frame_source']}")
    axis = facts.get("slice_axis")
    if axis is not None and len(facts["slice_offsets_min"]) != volume.shape[axis]:
        raise InputError(pet_path, f"SliceTiming has {len(facts['slice_offsets_min'])} entries for "
                                   f"{volume.shape[axis]} slices along {'ijk'[axis]}")
    return volume, schedule, facts


def read_input_function(path) -> InputFunction:
    """The plasma input function: a PET-BIDS `_blood.tsv` (time in s, plasma_radioactivity, and
    metabolite_parent_fraction applied when present), a TSV with `time` and `AIF` columns, or the phantom's
    `-pet-input.tsv` (time_min, plasma_activity). Units come from the TSV's JSON sidecar when it has one."""
    path = Path(path)
    table = read_table(path)
    meta = _read_json(sidecar_of(path)) if sidecar_of(path).is_file() else {}
    notes = []

    def units_of(column: str) -> str | None:
        entry = meta.get(column)
        return entry.get("Units") if isinstance(entry, dict) else None

    if "time_min" in table and "plasma_activity" in table:                       # the phantom's
        time, activity, column = table["time_min"], table["plasma_activity"], "plasma_activity"
    elif "time" in table and ("plasma_radioactivity" in table or "AIF" in table):
        column = "plasma_radioactivity" if "plasma_radioactivity" in table else "AIF"
        time_units = units_of("time") or "s"
        if time_units.lower() not in TIME_UNITS:
            raise InputError(path, f"time units '{time_units}' are not s or min")
        if not units_of("time"):
            notes.append("blood time assumed in seconds (PET-BIDS)")
        time, activity = table["time"] * TIME_UNITS[time_units.lower()], table[column]
        if "metabolite_parent_fraction" in table:
            fraction = np.interp(time, time[np.isfinite(table["metabolite_parent_fraction"])],
                                 table["metabolite_parent_fraction"][np.isfinite(table["metabolite_parent_fraction"])])
            activity = activity * fraction
            notes.append("plasma activity multiplied by metabolite_parent_fraction (interpolated)")
    else:
        raise InputError(path, f"input-function columns {', '.join(table)}: expected time and plasma_radioactivity "
                               f"(PET-BIDS _blood.tsv), time and AIF, or time_min and plasma_activity")
    keep = np.isfinite(time) & np.isfinite(activity)
    time, activity = time[keep], activity[keep]
    if len(time) < 2 or np.any(np.diff(time) <= 0):
        raise InputError(path, "input-function times must be increasing, with at least two samples")
    return InputFunction(time=time, activity=activity, units=units_of(column), source=str(path), notes=notes)
