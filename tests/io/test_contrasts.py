import pytest

from tests.helpers import save_nifti, smooth_volume
from volgen.errors import InputError
from volgen.io import canonical_contrast, case_from_paths, find_case, find_cases, parse_contrasts


@pytest.mark.parametrize("alias,name", [("t1", "t1n"), ("T1CE", "t1c"), ("t1gd", "t1c"), ("t2", "t2w"),
                                        ("flair", "t2f"), ("t2f", "t2f"), ("seg", "seg")])
def test_aliases(alias, name):
    assert canonical_contrast(alias) == name


def test_unknown_and_repeated_contrasts_are_refused():
    with pytest.raises(InputError, match="unknown contrast 'pd'"):
        parse_contrasts("t1,pd")
    with pytest.raises(InputError, match="named twice: t2f"):
        parse_contrasts("flair,t2f")
    assert parse_contrasts("t1,t2,flair") == ["t1n", "t2w", "t2f"]


def test_find_case_reads_brats_and_older_names(tmp_path):
    case = tmp_path / "BraTS-GLI-00001-000"
    case.mkdir()
    for c in ("t1n", "t2w", "seg"):
        save_nifti(case / f"{case.name}-{c}.nii.gz", smooth_volume())
    save_nifti(case / f"{case.name}_flair.nii.gz", smooth_volume())      # BraTS 2021 style
    save_nifti(case / f"{case.name}-pet-ki.nii.gz", smooth_volume())     # not a contrast: ignored
    found = find_case(case)
    assert sorted(found.paths) == ["seg", "t1n", "t2f", "t2w"]
    assert found.missing() == ["t1c"]
    assert [c.name for c in find_cases(tmp_path)] == [case.name]
    save_nifti(case / f"{case.name}-t2.nii.gz", smooth_volume())
    with pytest.raises(InputError, match="second file for contrast t2w"):
        find_case(case)


def test_explicit_paths_and_empty_folders(tmp_path):
    case = case_from_paths({"t1": tmp_path / "sub01-t1n.nii.gz", "flair": tmp_path / "sub01-t2f.nii.gz"})
    assert case.name == "sub01" and sorted(case.paths) == ["t1n", "t2f"]
    with pytest.raises(InputError, match="no file here names its contrast") as refused:
        find_case(tmp_path)
    message = str(refused.value)
    assert "\n" not in message and "-t1n" in message and "flair" in message and "--t1n PATH" in message


def test_an_image_whose_name_does_not_tell_its_contrast_is_refused_with_the_names_and_the_option(tmp_path):
    from volgen.io.contrasts import contrast_of_input

    assert contrast_of_input(tmp_path / "sub01_flair.nii.gz") == "t2f"
    assert contrast_of_input(tmp_path / "scan.nii.gz", "T1ce") == "t1c"
    with pytest.raises(InputError) as refused:
        contrast_of_input(tmp_path / "scan.nii.gz")
    message = str(refused.value)
    assert "\n" not in message and "scan.nii.gz" in message and "-t2f" in message and "--contrast" in message
    with pytest.raises(InputError, match="not an MRI contrast"):
        contrast_of_input(tmp_path / "scan.nii.gz", "seg")


def test_plain_file_names_are_recognised_and_the_case_is_named_after_its_folder(tmp_path):
    case = tmp_path / "subject-07"
    case.mkdir()
    for name in ("T1.nii.gz", "t2.nii.gz", "FLAIR.nii.gz", "brainmask.nii.gz"):
        save_nifti(case / name, smooth_volume())
    found = find_case(case)
    assert found.name == "subject-07" and sorted(found.paths) == ["t1n", "t2f", "t2w"]
    assert [c.name for c in find_cases(case)] == [c.name for c in find_cases(tmp_path)] == ["subject-07"]
    explicit = case_from_paths({"t1": case / "T1.nii.gz", "flair": case / "FLAIR.nii.gz"})
    assert explicit.name == "subject-07"


@pytest.mark.parametrize("files, target, expected", [
    (("BraTS-GLI-00001-000-t1n.nii.gz", "BraTS-GLI-00001-000-t2f.nii.gz"), "t1c", "BraTS-GLI-00001-000-t1c.nii.gz"),
    (("BraTS2021_00000_t1.nii.gz", "BraTS2021_00000_flair.nii.gz"), "t1c", "BraTS2021_00000_t1ce.nii.gz"),
    (("BraTS2021_00000_t1.nii.gz", "BraTS2021_00000_flair.nii.gz"), "t2w", "BraTS2021_00000_t2.nii.gz"),
    (("T1.nii.gz", "FLAIR.nii.gz"), "t1c", "T1CE.nii.gz"),
])
def test_outputs_follow_the_inputs_naming_convention(tmp_path, files, target, expected):
    from volgen.io.contrasts import naming_of

    case = "BraTS2021_00000" if files[0].startswith("BraTS2021") else "BraTS-GLI-00001-000"
    assert naming_of([tmp_path / f for f in files]).file_name(case, target) == expected


def test_a_stray_folder_beside_the_cases_is_skipped_with_a_note(tmp_path):
    for name in ("case-a", "case-b"):
        (tmp_path / name).mkdir()
        save_nifti(tmp_path / name / f"{name}-t1n.nii.gz", smooth_volume())
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("scanner notes")
    notes = []
    assert [c.name for c in find_cases(tmp_path, note=notes.append)] == ["case-a", "case-b"]
    assert len(notes) == 1 and "notes" in notes[0] and "\n" not in notes[0]
