"""`make gpu-check`'s script, on its CPU path (tiny sizes): every step runs and the JSON says so. On a GPU the same
script runs the full suite, the kernel bench and every job at full size against the CPU."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_every_step_on_the_cpu_and_reports_them(tmp_path):
    pytest.importorskip("nilearn")
    done = subprocess.run([sys.executable, "scripts/tools/gpu_check.py", "--out", str(tmp_path), "--cpu"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.splitlines()[0].startswith("gpu-check: no CUDA device here")
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["failed"] == [] and report["cuda"] is False
    jobs = report["steps"]["jobs"]
    assert set(jobs) == {f"{job} (2 mm)" for job in ("synthesis", "super_resolution", "inpainting", "lesion", "patlak")}
    assert all(entry["wall_s"] > 0 and entry["sample_s"] > 0 for entry in jobs.values())
    assert report["steps"]["training"]["steps"] == [2, 3]
    assert "passed" in report["steps"]["tests"]["summary"]
    assert "gpu-check passed" in (tmp_path / "gpu-check.log").read_text()
