"""BraTS 2023+ contrast names, their aliases, and finding a case's files."""
from __future__ import annotations

import re
import sys
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


# BraTS 2021 and earlier: t1, t1ce, t2, flair, joined by '_' (BraTS2021_00000_t1ce.nii.gz)
BRATS_2021_NAMES = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair", "seg": "seg"}


@dataclass(frozen=True)
class FileNaming:
    """How a case names its contrast files, so that outputs follow the input's convention: BraTS 2023+
    (`<case>-t1c.nii.gz`), BraTS 2021 (`<case>_t1ce.nii.gz`) or plain (`T1CE.nii.gz`)."""

    separator: str = "-"
    brats_2021: bool = False
    upper: bool = False
    prefixed: bool = True

    def token(self, contrast: str) -> str:
        token = BRATS_2021_NAMES.get(contrast, contrast) if self.brats_2021 else contrast
        return token.upper() if self.upper else token

    def file_name(self, case: str, contrast: str, suffix: str = ".nii.gz") -> str:
        token = self.token(contrast)
        return (f"{case}{self.separator}{token}" if self.prefixed else token) + suffix


def naming_of(paths) -> FileNaming:
    """The convention of a case's contrast files (BraTS 2023+ when they do not tell)."""
    matches = [m for m in (_FILE_PATTERN.match(Path(p).name) for p in paths) if m and ALIASES.get(
        m["contrast"].lower())]
    if not matches:
        return FileNaming()
    tokens = [m["contrast"] for m in matches]
    first = matches[0]
    prefixed = all(m["case"] for m in matches)
    separator = first.string[len(first["case"])] if prefixed else "-"
    old = any(t.lower() in ("t1", "t1ce", "t2", "flair") for t in tokens)
    upper = all(t.isupper() for t in tokens if any(ch.isalpha() for ch in t))
    return FileNaming(separator=separator, brats_2021=old, upper=upper, prefixed=prefixed)


@dataclass
class Case:
    """One subject: a name and the file of each contrast present (canonical names)."""

    name: str
    paths: dict[str, Path] = field(default_factory=dict)

    def missing(self, wanted=MRI_CONTRASTS) -> list[str]:
        return [c for c in wanted if c not in self.paths]

    @property
    def naming(self) -> FileNaming:
        return naming_of(self.paths.values())


# '<anything>-t1n.nii.gz', '<anything>_flair.nii' ... : the contrast is the last '-' or '_' separated token, or
# the whole name ('T1.nii.gz', 'FLAIR.nii.gz': a case folder of plain names).
_FILE_PATTERN = re.compile(r"^(?:(?P<case>.+)[-_])?(?P<contrast>[A-Za-z0-9]+)\.nii(\.gz)?$")


def contrast_of_file(path) -> str | None:
    """Canonical contrast named by a file's last token ('x-flair.nii.gz' -> 't2f', 'T1.nii.gz' -> 't1n'), or None."""
    match = _FILE_PATTERN.match(Path(path).name)
    return ALIASES.get(match["contrast"].lower()) if match else None


def case_name_of_file(path) -> str:
    """The case a contrast file belongs to: 'BraTS-GLI-00001-000' for '.../BraTS-GLI-00001-000-t1n.nii.gz', and its
    folder's name for a plain 'T1.nii.gz'."""
    path = Path(path)
    match = _FILE_PATTERN.match(path.name)
    if match and match["case"]:
        return match["case"]
    if match:
        return path.resolve().parent.name
    return path.name.split(".nii")[0]


RECOGNISED_NAMES = ("a name ending in -t1n, -t1c, -t2w, -t2f or -seg before .nii/.nii.gz ('-' or '_'; aliases t1, "
                    "t1ce, t1gd, t2, flair), or that name alone (T1.nii.gz, FLAIR.nii.gz)")


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
        case.name = case_name_of_file(next(iter(case.paths.values())))
    return case


def _note(text: str) -> None:
    print(f"volgen: note: {text}", file=sys.stderr)


def find_cases(root, note=_note) -> list[Case]:
    """Every case folder directly under `root` (or `root` itself when it is a case folder). A sub-folder with no
    file that names a contrast (notes/, derivatives/) is skipped with a one-line `note`."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "folder not found" if not root.exists() else "is not a folder")
    if any(contrast_of_file(p) for p in root.iterdir() if p.is_file()):
        return [find_case(root)]
    cases = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if any(contrast_of_file(p) for p in folder.iterdir() if p.is_file()):
            cases.append(find_case(folder))
        else:
            note(f"{folder}: skipped, no file here names its contrast")
    if not cases:
        raise InputError(root, f"no case folders found (a case folder holds files named {RECOGNISED_NAMES})")
    return cases
