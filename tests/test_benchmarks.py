"""Every benchmark script runs, at its smallest size, so that none can rot unnoticed (the search benchmark's
overhead part once failed on main for weeks).

Each `benchmarks/*.py` must have a row in SMOKE: the arguments of its smallest run, and a line its output must
hold. A new script without a row fails `test_every_script_has_a_row`: add its row here. Scripts that need a GPU
run their CPU part (e.g. `--dry-run`) or are skipped, with the reason, where there is no CUDA device.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))


@dataclass(frozen=True)
class Smoke:
    args: tuple[str, ...]
    prints: str  # a piece of its figures' output
    cuda_only: bool = False  # skipped without a CUDA device
    broken: str | None = None  # a known failure, why: expected to fail (strictly: a fixed script fails the test)


SMOKE = {
    "gpu_memory.py": Smoke(("--dry-run", "--presets", "option-b", "--precisions", "fp32"), "option-b"),
    "gpu_train.py": Smoke(("--steps", "2", "--batch-size", "2", "--sample-q", "64", "--eval-points", "1",
                           "--val-crops", "1", "--warmup", "0"), "steps/s", cuda_only=True),
    "noise.py": Smoke(("--smoke", "--jobs", "1"), "range / noise std"),
    "probe.py": Smoke(("--repeat", "1", "--smoke"), "warm, median"),
    "scan.py": Smoke(("--batch", "1", "--length", "16", "--d-inner", "8", "--repeats", "1"), "speed-up"),
    "search.py": Smoke(("--smoke",), "ms/trial"),
    "train.py": Smoke(("--smoke",), "learning curve"),
}


def test_every_script_has_a_row():
    assert SCRIPTS, "no benchmark scripts found"
    missing = sorted(set(SCRIPTS) - set(SMOKE))
    assert not missing, f"benchmarks without a smoke row in tests/test_benchmarks.py: {missing}"
    assert not sorted(set(SMOKE) - set(SCRIPTS)), "rows of scripts that no longer exist"


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_the_script_runs_at_its_smallest(script, tmp_path, request):
    smoke = SMOKE.get(script)
    if smoke is None:
        pytest.fail(f"{script} has no smoke row")
    if smoke.broken:
        request.applymarker(pytest.mark.xfail(reason=smoke.broken, strict=True))
    if smoke.cuda_only:
        import torch

        if not torch.cuda.is_available():
            pytest.skip(f"{script} needs a CUDA device (it has no CPU part)")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *smoke.args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert smoke.prints in proc.stdout, proc.stdout[-2000:]
