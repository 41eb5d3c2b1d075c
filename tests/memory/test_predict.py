"""Predicted peak memory: the fake run against a real CPU step, the breakdown, and the knobs' directions."""

import pytest
import torch

from scent_search.config import ModelConfig, TargetShape
from scent_search.errors import ConfigError
from scent_search.memory import BREAKDOWN_KEYS, COMPONENTS, MemoryProfile, profile_step
from scent_search.memory._predict import Adjustments, activation_bytes, predict, run_step
from scent_search.model import PRESETS, preset_config

TINY_SHAPE = TargetShape(batch_size=4, queries=64, lr_size=8)
# A small config with every part of the design, and a processor sequence of several scan chunks.
SMALL = ModelConfig(dim=32, num_lp_tokens=32, feature_dim=16, hidden_dim=64, mult=2, num_processor_layers=2,
                    num_decoder_layers=3, sigma_ls=(32.0, 8.0))
MID_SHAPE = TargetShape(batch_size=8, queries=512, lr_size=16)


@pytest.mark.parametrize("shape", [TINY_SHAPE, TINY_SHAPE.replace(checkpointing=True),
                                   TINY_SHAPE.replace(precision="bf16")], ids=["fp32", "checkpointing", "bf16"])
def test_fake_step_matches_real_cpu_step(tiny_cfg, shape):
    """The tracker on real CPU tensors and under FakeTensorMode, CUDA adjustments off: within 2%."""
    real, _ = run_step(tiny_cfg, shape, "torch", Adjustments.none(), mode="real")
    fake, _ = run_step(tiny_cfg, shape, "torch", Adjustments.none(), mode="fake")
    assert fake.peak == pytest.approx(real.peak, rel=0.02)
    for label, nbytes in real.peak_live.items():
        assert fake.peak_live.get(label, 0) == pytest.approx(nbytes, rel=0.02, abs=4096), label


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_scan_stand_in_matches_the_real_scan(precision):
    """The calibrated selective_scan stand-in allocates what the real chunked scan allocates."""
    shape = MID_SHAPE.replace(precision=precision)
    adj = Adjustments(cublas_workspace=None)
    real_scan = predict(SMALL, shape, "torch", Adjustments(cublas_workspace=None, fast_scan=False))
    stand_in = predict(SMALL, shape, "torch", adj)
    assert stand_in.peak_allocated_bytes == pytest.approx(real_scan.peak_allocated_bytes, rel=0.02)
    assert stand_in.breakdown["processor"] == pytest.approx(real_scan.breakdown["processor"], rel=0.05)


def test_breakdown_sums_to_the_peak_and_names_the_components():
    prof = profile_step(SMALL, MID_SHAPE)
    assert set(prof.breakdown) == set(BREAKDOWN_KEYS)
    assert sum(prof.breakdown.values()) == prof.peak_allocated_bytes
    assert prof.activation_bytes == sum(prof.breakdown[c] for c in COMPONENTS)
    for name in ("bandwidth_lins", "modulation_lins", "hv_lins", "skips"):
        per_scale = sum(v for k, v in prof.scale_breakdown.items() if k.startswith(name + "["))
        assert per_scale == prof.breakdown[name]
    assert {"bandwidth_lins[0]", "bandwidth_lins[1]", "modulation_lins[1]", "hv_lins[0]"} <= set(prof.scale_breakdown)
    assert prof.source == "predicted" and prof.peak_reserved_bytes is None
    assert prof.breakdown["parameters"] >= prof.n_params * 4
    assert prof.breakdown["optimizer_state"] >= 2 * prof.n_params * 4  # Adam: two fp32 moments
    assert MemoryProfile.from_dict(prof.to_dict()) == prof


def test_every_preset_predicts_at_the_seed_shape():
    """... without allocating memory of the target size (the baseline predicts ~55 GiB)."""
    import resource

    shape = TargetShape(batch_size=64, queries=1024, lr_size=32)
    for name in PRESETS:
        prof = profile_step(preset_config(name), shape)
        assert prof.peak_allocated_bytes > 0 and sum(prof.breakdown.values()) == prof.peak_allocated_bytes
    assert profile_step(preset_config("baseline"), shape).peak_allocated_bytes > 40 * 2 ** 30
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 4 * 2 ** 20  # KiB: this process stayed < 4 GiB


def _peak(cfg, shape=MID_SHAPE, **kw):
    return predict(cfg, shape, "torch", **kw).peak_allocated_bytes


@pytest.mark.parametrize("knob, low, high", [("hidden_dim", 32, 64), ("mult", 1, 2), ("num_decoder_layers", 2, 3),
                                             ("sigma_ls", (32.0,), (32.0, 8.0)), ("share_scales", True, False)])
def test_peak_moves_the_right_way_with_each_knob(knob, low, high):
    assert _peak(SMALL.replace(**{knob: low})) < _peak(SMALL.replace(**{knob: high}))


@pytest.mark.parametrize("field, low, high", [("batch_size", 4, 8), ("queries", 256, 512)])
def test_peak_grows_with_batch_size_and_query_count(field, low, high):
    assert _peak(SMALL, MID_SHAPE.replace(**{field: low})) < _peak(SMALL, MID_SHAPE.replace(**{field: high}))


def test_bf16_predicts_less_than_fp32():
    assert _peak(SMALL, MID_SHAPE.replace(precision="bf16")) < _peak(SMALL, MID_SHAPE)


def test_checkpointing_predicts_less_activation_memory():
    plain = predict(SMALL, MID_SHAPE, "torch")
    ckpt = predict(SMALL, MID_SHAPE.replace(checkpointing=True), "torch")
    assert ckpt.activation_bytes < plain.activation_bytes
    assert ckpt.peak_allocated_bytes < plain.peak_allocated_bytes


def test_mamba_ssm_kernels_save_less_than_the_reference_scan():
    torch_scan = predict(SMALL, MID_SHAPE, "torch")
    fused = predict(SMALL, MID_SHAPE, "mamba_ssm")
    assert fused.backend == "mamba_ssm"
    assert fused.breakdown["processor"] < torch_scan.breakdown["processor"] / 4


@pytest.mark.parametrize("bias, units", [("none", 1), ("raster", 2), ("grid", 3)])
def test_attention_keeps_no_query_by_latent_probabilities(bias, units):
    """modulation_ca's memory grows with the LP count M only by the bias it is given: (B, Q, M) for the raster
    bias, twice that for the grid bias (its d^2 is kept for the strength's gradient). A math-path SDPA would add
    the (B, heads, Q, M) probabilities on top; CUDA's flash / memory-efficient kernels keep none."""
    b, q = MID_SHAPE.batch_size, MID_SHAPE.queries
    unit = b * q * (256 - 16) * 4  # one (B, Q, dM) fp32 tensor, bytes

    def growth(adj):
        small, large = (predict(SMALL.replace(num_lp_tokens=m, spatial_bias=bias), MID_SHAPE, "mamba_ssm", adj)
                        for m in (16, 256))
        return (large.breakdown["modulation_ca"] - small.breakdown["modulation_ca"]) / unit

    assert units - 1 < growth(Adjustments()) < units
    if bias == "grid":  # the CPU's math path (what a plain fake run dispatches to) keeps the probabilities
        assert growth(Adjustments(efficient_attention=False)) > units + SMALL.modulation_heads - 1


def test_efficient_attention_stand_in_gives_gradients_of_the_right_shapes():
    from scent_search.memory._cuda_model import CudaAttention

    q, k, v = (torch.randn(2, 2, n, 8, requires_grad=True) for n in (10, 7, 7))
    mask = torch.randn(2, 1, 10, 7, requires_grad=True)
    with CudaAttention():
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert out.shape == (2, 2, 10, 8)
    grads = torch.autograd.grad(out.sum(), (q, k, v, mask))
    assert [g.shape for g in grads] == [q.shape, k.shape, v.shape, mask.shape]


def test_feedforward_activation_figure():
    """One residual PreNorm(FeedForward) at (B, Q, h) fp32 keeps LN out, W1 out, gelu, product, output."""
    from scent_search.model.blocks import ResidualFeedForwards

    b, q, h, m = 2, 64, 32, 4
    kept = activation_bytes(lambda: ResidualFeedForwards(h, m, 1), (b, q, h))
    n = b * q * 4  # bytes per feature column
    assert kept >= n * (h + 2 * h * m + h * m + h * m + h)


def test_unknown_device_and_backend_are_config_errors():
    with pytest.raises(ConfigError, match="device"):
        profile_step(SMALL, MID_SHAPE, device="tpu")
    with pytest.raises(ConfigError, match="backend"):
        profile_step(SMALL, MID_SHAPE, backend="triton")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            profile_step(SMALL, MID_SHAPE, device="cuda")


def test_constraint_bytes():
    prof = profile_step(SMALL, MID_SHAPE)
    from scent_search.memory import RESERVED_ALLOWANCE_BYTES

    assert prof.constraint_bytes(0.1) == int(prof.peak_allocated_bytes * 1.1) + RESERVED_ALLOWANCE_BYTES


def test_analytic_adam_step_matches_the_real_foreach_step(tiny_cfg):
    """With almost no activations the Adam step sets the peak; its analytic temporary equals the real one."""
    shape = TargetShape(batch_size=1, queries=1, lr_size=4)
    for mode in ("fake", "real"):
        real, _ = run_step(tiny_cfg, shape, "torch", Adjustments.none(), mode=mode, real_adam=True)
        analytic, _ = run_step(tiny_cfg, shape, "torch", Adjustments.none(), mode=mode)
        assert analytic.peak == pytest.approx(real.peak, rel=0.005)
        assert analytic.peak_live["optimizer_state"] == pytest.approx(real.peak_live["optimizer_state"], rel=0.01)


def test_cuda_autocast_emulation_follows_the_cuda_policy():
    """matmul-like ops to bf16 (weights cast once and cached), norms and softplus to fp32, cumsum outputs fp32."""
    import torch.nn.functional as F

    from scent_search.memory._cuda_model import CudaAutocast

    lin = torch.nn.Linear(8, 8)
    x = torch.randn(2, 8)
    emu = CudaAutocast(torch.bfloat16)
    emu.enabled = True
    with emu:
        y = lin(x)
        y2 = lin(x)
        ln = F.layer_norm(y, (8,))
        sp = F.softplus(y)
        cs = torch.cumsum(y, dim=0)
        e = torch.einsum("bi,bi->b", x, x)
    assert y.dtype == torch.bfloat16 and e.dtype == torch.bfloat16
    assert ln.dtype == sp.dtype == cs.dtype == torch.float32
    assert len(emu._cache) == 2  # weight and bias, cast once for both calls
    assert y2.dtype == torch.bfloat16


def test_max_batch_size_is_the_largest_that_fits(tiny_cfg):
    from scent_search.memory import max_batch_size

    budget = predict(tiny_cfg, MID_SHAPE.replace(batch_size=12), "torch").constraint_bytes(0.0) + 1
    best, prof = max_batch_size(tiny_cfg, MID_SHAPE, budget, 0.0, backend="torch", limit=64)
    assert best >= 12 and prof.constraint_bytes(0.0) <= budget
    assert predict(tiny_cfg, MID_SHAPE.replace(batch_size=best + 1), "torch").constraint_bytes(0.0) > budget
    assert max_batch_size(tiny_cfg, MID_SHAPE, 1, 0.0, backend="torch") == (0, None)


def test_ctrl_c_during_a_prediction_is_raised_when_it_ends_not_lost():
    """The tracker counts frees in weakref callbacks, where Python prints and drops a KeyboardInterrupt; a
    Ctrl-C during a prediction is held and raised when the prediction ends (a run once went on after it)."""
    import os
    import signal

    from scent_search.memory._predict import interrupts_deferred

    reached = []
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (not under nohup ... &)
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100_000))  # Python handles the signal between bytecodes: well within this
            reached.append("the block ran to its end")
    assert reached == ["the block ran to its end"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the usual handler is back
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an ignored SIGINT stays ignored: nothing is held or raised
    with interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(100_000))
    signal.signal(signal.SIGINT, before)
