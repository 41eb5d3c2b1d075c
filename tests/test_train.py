"""Training loop, evaluation and PSNR (docs/design.md, "Training and PSNR")."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import scent_search.step as step_mod
from scent_search.config import ModelConfig, TrainConfig
from scent_search.data import DataSplit, ImageSource, bicubic_upsample, make_validation_set
from scent_search.errors import DataError, NonFiniteLoss, OutOfMemory
from scent_search.model import MambaSCENTHybrid
from scent_search.train import PSNR_CAP_DB, evaluate, load_data, lr_factor, psnr, train

TINY = ModelConfig(dim=32, num_lp_tokens=16, feature_dim=16, hidden_dim=32, mult=2, num_processor_layers=1,
                   num_decoder_layers=2, sigma_ls=(32.0, 8.0))
# Small LR (8) and validation crops (16) keep each step a few milliseconds.
FAST = TrainConfig(steps=6, batch_size=2, sample_q=32, lr_size=8, val_hr_size=16, val_crops=3, eval_points=2,
                   lr=1e-3)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(4):
        # smooth colour ramps plus noise: learnable, not constant
        y, x = np.meshgrid(np.linspace(0, 1, 48), np.linspace(0, 1, 40), indexing="ij")
        im = np.stack([x, y, (x + y) / 2], -1) * 200 + rng.integers(0, 50, (48, 40, 3))
        Image.fromarray(im.astype(np.uint8)).save(folder / f"im{i}.png")
    return load_data(folder, FAST)


# ---------------------------------------------------------------------------------------------- PSNR


def test_psnr_of_identical_images_is_the_documented_cap():
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(psnr(x, x.clone()), torch.full((2,), PSNR_CAP_DB, dtype=torch.float64))


def test_psnr_against_known_noise_matches_the_formula():
    target = torch.full((1, 3, 20, 20), 0.5)
    signs = torch.randint(0, 2, target.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert psnr(target + 0.1 * signs, target).item() == pytest.approx(20.0, abs=1e-5)  # MSE 0.01: 20 dB
    noise = torch.randn(3, 3, 20, 20, generator=torch.Generator().manual_seed(1)) * 0.05
    pred = target + noise
    mse = ((pred.double() - target.double()) ** 2).flatten(1).mean(1).numpy()
    assert np.allclose(psnr(pred, target).numpy(), 10 * np.log10(1 / mse))


def test_psnr_shave_ignores_the_border():
    target = torch.rand(1, 3, 20, 20)
    pred = target.clone()
    pred[..., :4, :] = 0  # damage only a 4-pixel border band
    pred[..., :, -4:] = 1
    assert psnr(pred, target, shave=4).item() == PSNR_CAP_DB
    assert psnr(pred, target, shave=3).item() < 40


# ---------------------------------------------------------------------------------------------- evaluation


class BicubicModel(torch.nn.Module):
    """A stand-in model that answers with bicubic interpolation of its LR input at the query coords."""

    def decode_chunked(self, lr, coords, chunk):
        assert coords.shape[1] > chunk  # the full grid really is split into chunks
        parts = [F.grid_sample(lr, coords[:, i:i + chunk].flip(-1)[:, :, None], mode="bicubic",
                               padding_mode="border", align_corners=False)[..., 0].transpose(1, 2)
                 for i in range(0, coords.shape[1], chunk)]
        return torch.cat(parts, 1)  # (B, Q, 3)


def test_bicubic_psnr_is_computed_on_exactly_the_scored_crops(small_data):
    val = make_validation_set(small_data.val, hr_size=24, scales=(2.0, 3.0, 4.0), n_crops=5)
    res = evaluate(BicubicModel(), val, chunk=100, batch_size=2)
    assert set(res.psnr) == {2.0, 3.0, 4.0}
    for s in (2.0, 3.0, 4.0):
        assert res.psnr[s] == pytest.approx(res.bicubic[s], abs=1e-3)
        v = val.scales[s]  # the reported bicubic figure is the mean per-crop PSNR of these very crops
        want = psnr(bicubic_upsample(v.lr, 24), v.hr, shave=int(s)).mean().item()
        assert res.bicubic[s] == pytest.approx(want, abs=1e-9)
    assert res.bicubic[2.0] > res.bicubic[4.0]  # more LR pixels, better interpolation


def test_evaluate_scores_a_real_model_and_restores_train_mode(small_data):
    torch.manual_seed(0)
    model = MambaSCENTHybrid(TINY.replace(residual_bicubic=True))
    model.train()
    val = make_validation_set(small_data.val, hr_size=16, scales=(4.0,), n_crops=2)
    res = evaluate(model, val, chunk=64)
    assert math.isfinite(res.psnr[4.0]) and model.training


# ---------------------------------------------------------------------------------------------- training


def test_lr_schedule_warms_up_then_decays_to_zero():
    cfg = TrainConfig(steps=100, warmup_steps=10)
    assert lr_factor(cfg, 0, 0.0) == pytest.approx(0.1)
    assert lr_factor(cfg, 9, 0.09) == pytest.approx(1.0)
    assert lr_factor(cfg, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(cfg, 50, 0.5) == pytest.approx(0.5)
    assert lr_factor(cfg, 99, 1.0) == pytest.approx(0.0)
    assert lr_factor(cfg.replace(lr_schedule="constant"), 99, 1.0) == 1.0


def test_train_reports_throughput_psnr_and_eval_points(small_data):
    seen = []
    r = train(TINY, FAST.replace(eval_scales=(2.0,)), small_data, "cpu", on_eval=lambda i, p: seen.append((i, p)))
    assert r.steps_done == 6 and len(r.losses) == 6
    assert [i for i, _ in seen] == [0, 1] and [s for s, _ in r.evals] == [3, 6]
    assert seen[-1][1] == r.psnr == r.psnr_by_scale[4.0]
    assert set(r.psnr_by_scale) == set(r.bicubic_by_scale) == {2.0, 4.0}
    assert r.bicubic_psnr == r.bicubic_by_scale[4.0] and math.isfinite(r.bicubic_psnr)
    assert r.steps_per_s > 0 and r.samples_per_s == pytest.approx(2 * r.steps_per_s)
    assert r.flops_per_step > 0 and r.n_params == sum(p.numel() for p in MambaSCENTHybrid(TINY).parameters())
    assert r.backend == "torch" and r.model is None


def test_flops_per_step_grow_with_the_batch(small_data):
    a = train(TINY, FAST.replace(steps=2, eval_points=1), small_data, "cpu")
    b = train(TINY, FAST.replace(steps=2, eval_points=1, batch_size=4), small_data, "cpu")
    assert 1.5 * a.flops_per_step < b.flops_per_step < 2.5 * a.flops_per_step


def test_seeded_runs_repeat_exactly_on_cpu(small_data):
    a = train(TINY, FAST, small_data, "cpu", return_model=True)
    b = train(TINY, FAST, small_data, "cpu", return_model=True)
    c = train(TINY, FAST.replace(seed=1), small_data, "cpu")
    assert a.losses == b.losses and a.evals == b.evals
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert a.losses != c.losses


def test_callback_exception_propagates_to_stop_the_run(small_data):
    class Pruned(Exception):
        pass

    def prune(index, value):
        raise Pruned(index)

    with pytest.raises(Pruned):
        train(TINY, FAST.replace(steps=100, eval_points=10), small_data, "cpu", on_eval=prune)


def test_nan_loss_stops_the_run_with_the_nan_reason(small_data, monkeypatch):
    real, calls = step_mod.l1_loss, []

    def poisoned(pred, target):
        calls.append(1)
        loss = real(pred, target)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(step_mod, "l1_loss", poisoned)
    with pytest.raises(NonFiniteLoss, match="step 3") as e:
        train(TINY, FAST.replace(steps=50), small_data, "cpu")
    assert e.value.reason == "nan" and len(calls) == 3


def test_out_of_memory_surfaces_as_the_oom_error(small_data, monkeypatch):
    def oom(self, lr, coords):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(MambaSCENTHybrid, "forward", oom)
    with pytest.raises(OutOfMemory, match="2.00 GiB") as e:
        train(TINY, FAST, small_data, "cpu")
    assert e.value.reason == "oom"


def test_seconds_budget_stops_a_run_with_a_huge_step_count(small_data):
    r = train(TINY, FAST.replace(steps=10 ** 9, seconds=0.5, eval_points=1), small_data, "cpu")
    assert 1 <= r.steps_done < 10 ** 9 and r.evals[-1][0] == r.steps_done


def test_checkpointing_gives_the_same_training(small_data):
    a = train(TINY, FAST.replace(steps=3, eval_points=1), small_data, "cpu")
    b = train(TINY, FAST.replace(steps=3, eval_points=1, checkpointing=True), small_data, "cpu")
    assert np.allclose(a.losses, b.losses, rtol=1e-5)


def test_bad_data_gives_the_named_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        train(TINY, FAST, tmp_path / "empty", "cpu")
    good = np.zeros((40, 40, 3), np.uint8)
    src = ImageSource([good, np.zeros((20, 60, 3), np.uint8)], ["fine.png", "short.png"])
    split = DataSplit(train=src, val=ImageSource([good], ["v.png"]), spec="test")
    with pytest.raises(DataError, match="short.png"):
        train(TINY, FAST, split, "cpu")


@pytest.mark.slow  # ~10 s on an idle 2-core CPU
def test_tiny_config_learns_on_the_default_data():
    cfg = TrainConfig(steps=300, batch_size=4, sample_q=256, lr=1e-3, eval_points=1, val_crops=4)
    data = load_data(None, cfg)
    torch.manual_seed(cfg.seed)  # train() builds its model from the same seed: this is its initial state
    untrained = evaluate(MambaSCENTHybrid(TINY), make_validation_set(data.val, n_crops=4)).psnr[4.0]
    r = train(TINY, cfg, data, "cpu")
    assert np.mean(r.losses[-50:]) < 0.8 * np.mean(r.losses[:50])
    assert r.psnr > untrained + 2.0
