"""benchmarks/gpu_memory.py's logic, on a CPU: --dry-run, and the target check with pretend measurements."""

import dataclasses
import importlib.util
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_memory.py"


@pytest.fixture
def gpu_memory():
    spec = importlib.util.spec_from_file_location("gpu_memory", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dry_run_predicts_without_a_gpu(gpu_memory, tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert gpu_memory.main(["--dry-run", "--presets", "option-b", "--precisions", "fp32",
                            "--json", str(out)]) == 0
    assert "option-b" in capsys.readouterr().out
    assert out.exists()


@pytest.mark.parametrize("measured_over_predicted, rc", [(1.0, 0), (0.97, 0), (1.03, 1), (0.9, 1)])
def test_target_check_with_pretend_measurements(gpu_memory, monkeypatch, tmp_path, measured_over_predicted, rc):
    """Within 5% of max_memory_allocated and never under by more than 2%: anything else exits 1."""
    import torch

    from scent_search import memory

    real_profile_step = memory.profile_step

    def fake_profile_step(cfg, shape, device="predict", backend=None):
        pred = real_profile_step(cfg, shape, backend="torch")
        if device == "predict":
            return pred
        return dataclasses.replace(pred, source="measured", device_kind="Pretend GPU",
                                   peak_allocated_bytes=int(pred.peak_allocated_bytes * measured_over_predicted),
                                   peak_reserved_bytes=int(pred.peak_allocated_bytes * measured_over_predicted * 1.05))

    monkeypatch.setattr(memory, "profile_step", fake_profile_step)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Pretend GPU")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i=0: type("P", (), {"total_memory": 2 ** 37}))
    db = f"sqlite:///{tmp_path / 'cal.db'}"
    assert gpu_memory.main(["--presets", "option-b", "--precisions", "fp32", "--storage", db]) == rc
    assert memory.ProfileCache(db).calibration_pairs()
