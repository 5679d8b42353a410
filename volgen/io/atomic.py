"""Write outputs so that a failure never leaves a half-written file, and an existing output is kept unless asked."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from volgen.errors import OutputError

_DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz")


def split_suffix(path: Path) -> tuple[str, str]:
    """('case-t1n', '.nii.gz') for 'case-t1n.nii.gz': the whole extension, so temp names keep it."""
    name = path.name
    for suffix in _DOUBLE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return path.stem, path.suffix


def check_output(path, *, overwrite: bool) -> Path:
    """Check that `path` may be written, creating nothing (to refuse a job's outputs before the job runs): refuse an
    existing one unless `overwrite`, and a parent folder that cannot be created or written."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(path, "already exists; pass --overwrite to replace it")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(path.parent, f"cannot create output folder ({ancestor} is not a folder)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(ancestor, "output folder is not writable")
    _probe_writable(ancestor)
    return path


def _probe_writable(folder: Path) -> None:
    """Create and remove a file in `folder`: permission bits do not tell for root, /proc or a read-only mount."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".volgen-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(folder, f"output folder is not writable ({exc.strerror or exc})") from None


def prepare_output(path, *, overwrite: bool) -> Path:
    """`check_output`, then create the parent folder."""
    path = check_output(path, overwrite=overwrite)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(path.parent, f"cannot create output folder ({exc.strerror or exc})") from None
    return path


@contextlib.contextmanager
def atomic_path(path, *, overwrite: bool = False):
    """Yield a temporary path beside `path` with the same extension; rename it onto `path` only on success."""
    with atomic_paths([path], overwrite=overwrite) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(paths, *, overwrite: bool = False):
    """Temporary paths for several outputs of one job (image, montage, sidecar); they are renamed onto theirs only
    when every one was written, so a failure leaves none of them."""
    paths = [prepare_output(p, overwrite=overwrite) for p in paths]
    tmps = []
    for path in paths:
        stem, suffix = split_suffix(path)
        tmps.append(path.with_name(f".{stem}.partial-{os.getpid()}{suffix}"))
    try:
        try:
            yield tmps
            for tmp, path in zip(tmps, paths):
                if not tmp.exists():
                    raise OutputError(path, "writer produced no file")
            for tmp, path in zip(tmps, paths):
                os.replace(tmp, path)
        except OSError as exc:              # a disk that fills or a folder that goes away while writing
            raise OutputError(paths[0].parent, f"cannot write the outputs ({exc.strerror or exc})") from None
    finally:
        for tmp in tmps:
            if tmp.exists():
                tmp.unlink()


@contextlib.contextmanager
def atomic_folder(path, *, overwrite: bool = False):
    """Yield a temporary folder beside `path`; on success it replaces `path` (an old one is removed only then)."""
    path = prepare_output(path, overwrite=overwrite)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
