"""The README's Python snippets run as written (in a folder holding the demo's phantom case), with the shipped
default models. They ask for 2 sampling steps, so this takes about a minute on 2 cores."""
import re
from pathlib import Path

import pytest

from volgen.phantom import PhantomSpec, generate_case, write_case

README = Path(__file__).parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    write_case(generate_case(seed=0, index=0, spec=PhantomSpec(pet=None)), root / "demo_out")
    return root


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_snippet_runs(index, demo_folder, monkeypatch, tmp_path):
    code = python_blocks()[index]
    if "demo_out" not in code:
        monkeypatch.chdir(tmp_path)           # snippets that write files write them here
    else:
        monkeypatch.chdir(demo_folder)
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
