import pytest

from tests.conftest import save_nifti, smooth_volume
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
