import pytest
import torch

from scent_search.config import ModelConfig
from scent_search.model import MambaSCENTHybrid, mamba_ssm_available, selective_scan, selective_scan_ref
from scent_search.model.processor import SCAN_CHUNK, BiMamba, Mamba

# The parameter names and shapes of mamba_ssm.Mamba(d_model, d_state=16, d_conv=4, expand=2) (mamba-ssm 2.x).
def mamba_ssm_shapes(d_model: int) -> dict[str, tuple[int, ...]]:
    d_inner, dt_rank = 2 * d_model, -(-d_model // 16)
    return {"A_log": (d_inner, 16), "D": (d_inner,), "in_proj.weight": (2 * d_inner, d_model),
            "conv1d.weight": (d_inner, 1, 4), "conv1d.bias": (d_inner,), "x_proj.weight": (dt_rank + 32, d_inner),
            "dt_proj.weight": (d_inner, dt_rank), "dt_proj.bias": (d_inner,), "out_proj.weight": (d_model, d_inner)}


def scan_inputs(b, L, d, n=16, dtype=torch.float64, seed=0, dt_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    u = r(b, L, d)
    delta = torch.nn.functional.softplus(r(b, L, d) - 2) * dt_scale
    A = -torch.exp(r(d, n) * 0.5 + 1)  # decays e^-1 .. e^-5 per unit delta
    return u, delta, A, r(b, L, n), r(b, L, n), r(d)


@pytest.mark.parametrize("L", [1, 7, SCAN_CHUNK, SCAN_CHUNK + 1, 3 * SCAN_CHUNK - 5, 100])
@pytest.mark.parametrize("b, d, n", [(1, 4, 16), (3, 8, 4)])
def test_selective_scan_matches_sequential_reference(L, b, d, n):
    args = scan_inputs(b, L, d, n)
    torch.testing.assert_close(selective_scan(*args), selective_scan_ref(*args), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_selective_scan_result_does_not_depend_on_chunk(chunk):
    args = scan_inputs(2, 40, 6)
    torch.testing.assert_close(selective_scan(*args, chunk=chunk), selective_scan_ref(*args), rtol=1e-10, atol=1e-10)


def test_selective_scan_gradients_match_reference():
    args = [t.requires_grad_() for t in scan_inputs(2, 37, 5, 4)]
    g_fast = torch.autograd.grad(selective_scan(*args).sin().sum(), args)
    g_ref = torch.autograd.grad(selective_scan_ref(*args).sin().sum(), args)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_selective_scan_float32_close_to_float64_reference():
    args = scan_inputs(2, 64, 8)
    y32 = selective_scan(*(t.float() for t in args))
    torch.testing.assert_close(y32.double(), selective_scan_ref(*args), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dt_scale", [200.0, 2000.0])
def test_selective_scan_and_its_gradients_stay_finite_under_extreme_decay(dt_scale):
    """Up to tens of thousands of nats per token. Gradients too: a division by the decay once squared it in
    backward, and a training run turned to NaN."""
    args = [t.requires_grad_() for t in scan_inputs(2, 64, 8, dtype=torch.float32, dt_scale=dt_scale)]
    y = selective_scan(*args)
    assert torch.isfinite(y).all()
    grads = torch.autograd.grad(y.square().sum(), args)
    assert all(torch.isfinite(g).all() for g in grads)


def test_mamba_block_has_mamba_ssm_parameter_names_and_shapes():
    block = Mamba(48)
    assert {k: tuple(v.shape) for k, v in block.state_dict().items()} == mamba_ssm_shapes(48)


def test_state_dict_of_a_mamba_ssm_layout_loads():
    shapes = mamba_ssm_shapes(32)
    foreign = {k: torch.randn(s) for k, s in shapes.items()}
    block = Mamba(32)
    block.load_state_dict(foreign)  # strict: same names, same shapes
    assert torch.equal(block.A_log, foreign["A_log"])


def test_backend_is_reported():
    model = MambaSCENTHybrid(ModelConfig(dim=32, num_lp_tokens=8, feature_dim=8, hidden_dim=16,
                                         num_processor_layers=1))
    assert model.processor_backend == "torch"  # parameters are on the CPU
    expected = "mamba_ssm" if mamba_ssm_available() else "torch"
    assert model.processor.backend("cuda") == expected


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and mamba_ssm_available()), reason="needs CUDA and mamba-ssm")
@pytest.mark.parametrize("block_cls", [Mamba, BiMamba])
def test_mamba_ssm_fast_path_matches_torch_path(block_cls):
    torch.manual_seed(0)
    block = block_cls(64).cuda()
    x = torch.randn(2, 96, 64, device="cuda")
    fast = block(x)
    from scent_search.model import processor
    saved, processor.mamba_inner_fn = processor.mamba_inner_fn, None
    try:
        ref = block(x)
    finally:
        processor.mamba_inner_fn = saved
    torch.testing.assert_close(fast, ref, rtol=2e-3, atol=2e-3)
