"""BraTS 2023+ contrast names, their aliases, and finding a case's files."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from volgen.errors import InputError

MRI_CONTRASTS = ("t1n", "t1c", "t2w", "t2f")
CONTRASTS = MRI_CONTRASTS + ("seg",)
ALIASES = {
    "t1n": "t1n", "t1": "t1n", "t1w": "t1n", "t1native": "t1n",
    "t1c": "t1c", "t1ce": "t1c", "t1gd": "t1c", "t1post": "t1c",
    "t2w": "t2w", "t2": "t2w",
    "t2f": "t2f", "flair": "t2f", "t2flair": "t2f",
    "seg": "seg", "label": "seg", "labels": "seg",
    "petsum": "petsum",          # a static PET image (the phantom's summed 40-60 min frames): the PET prior's data
}


def canonical_contrast(name: str) -> str:
    """'flair' -> 't2f'; unknown names are refused with the accepted list."""
    key = name.strip().lower().replace("_", "").replace("-", "")
    if key not in ALIASES:
        accepted = ", ".join(CONTRASTS) + " (aliases: t1, t1ce, t1gd, t2, flair)"
        raise InputError(None, f"unknown contrast '{name}'; accepted: {accepted}")
    return ALIASES[key]


def parse_contrasts(text: str) -> list[str]:
    """'t1,t2,flair' -> ['t1n', 't2w', 't2f'], refusing repeats."""
    names = [canonical_contrast(part) for part in text.split(",") if part.strip()]
    if not names:
        raise InputError(None, "no contrast named")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(None, f"contrast named twice: {', '.join(repeated)}")
    return names


@dataclass
class Case:
    """One subject: a name and the file of each contrast present (canonical names)."""

    name: str
    paths: dict[str, Path] = field(default_factory=dict)

    def missing(self, wanted=MRI_CONTRASTS) -> list[str]:
        return [c for c in wanted if c not in self.paths]


# '<anything>-t1n.nii.gz', '<anything>_flair.nii' ... : the contrast is the last '-' or '_' separated token.
_FILE_PATTERN = re.compile(r"^(?P<case>.+)[-_](?P<contrast>[A-Za-z0-9]+)\.nii(\.gz)?$")


def contrast_of_file(path) -> str | None:
    """Canonical contrast named by a file's last token ('x-flair.nii.gz' -> 't2f'), or None."""
    match = _FILE_PATTERN.match(Path(path).name)
    return ALIASES.get(match["contrast"].lower()) if match else None


RECOGNISED_NAMES = ("a name ending in -t1n, -t1c, -t2w, -t2f or -seg before .nii/.nii.gz ('-' or '_'; aliases t1, "
                    "t1ce, t1gd, t2, flair)")


def contrast_of_input(path, given: str | None = None) -> str:
    """The MRI contrast of an input image: `given` (--contrast) when set, else its file name's; refused, with the
    names that are recognised and the option to pass, when neither tells (never guessed)."""
    if given:
        contrast = canonical_contrast(given)
    else:
        contrast = contrast_of_file(path) if path else None
        if contrast is None:
            shown = f"'{Path(path).name}'" if path else "an image given without a file"
            raise InputError(path, f"cannot tell the contrast of {shown} from its name (recognised: "
                                   f"{RECOGNISED_NAMES}); pass it with --contrast t1n|t1c|t2w|t2f "
                                   f"(contrast= from Python)")
    if contrast not in MRI_CONTRASTS:
        raise InputError(path, f"'{contrast}' is not an MRI contrast ({', '.join(MRI_CONTRASTS)})")
    return contrast


def find_case(folder) -> Case:
    """Files of a BraTS-layout case folder `<case>/<case>-<contrast>.nii.gz` (older `_flair` names accepted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "case folder not found" if not folder.exists() else "is not a folder")
    case = Case(name=folder.name)
    for path in sorted(folder.iterdir()):
        contrast = contrast_of_file(path)
        if contrast is None:
            continue
        if contrast in case.paths:
            raise InputError(path, f"second file for contrast {contrast} (first: {case.paths[contrast].name})")
        case.paths[contrast] = path
    if not case.paths:
        raise InputError(folder, f"no file here names its contrast (recognised: {RECOGNISED_NAMES}); rename them, "
                                 f"or give the files with --t1n PATH --t1c PATH --t2w PATH --t2f PATH")
    return case


def case_from_paths(paths: dict[str, str | Path], name: str | None = None) -> Case:
    """A case from explicit files, e.g. {'t1': 'a.nii.gz', 'flair': 'b.nii.gz'}."""
    case = Case(name=name or "")
    for contrast, path in paths.items():
        canonical = canonical_contrast(contrast)
        if canonical in case.paths:
            raise InputError(path, f"second file for contrast {canonical}")
        case.paths[canonical] = Path(path)
    if not case.name and case.paths:
        from volgen.io.nifti import volume_name

        first = volume_name(next(iter(case.paths.values())))
        case.name = re.sub(r"[-_][A-Za-z0-9]+$", "", first) or first
    return case


def find_cases(root) -> list[Case]:
    """Every case folder directly under `root` (or `root` itself when it is a case folder)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "folder not found" if not root.exists() else "is not a folder")
    if any(contrast_of_file(p) for p in root.iterdir() if p.is_file()):
        return [find_case(root)]
    cases = [find_case(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    if not cases:
        raise InputError(root, "no case folders found")
    return cases
