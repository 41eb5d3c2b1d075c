import dataclasses

import pytest
import torch

from scent_search.config import ModelConfig, from_mapping
from scent_search.errors import ConfigError
from scent_search.model import PRESETS, MambaSCENTHybrid, load_checkpoint, preset_config, save_checkpoint
from scent_search.model.blocks import FeedForward


def build(cfg: ModelConfig, seed: int = 0) -> MambaSCENTHybrid:
    torch.manual_seed(seed)
    return MambaSCENTHybrid(cfg)


def inputs(b=2, q=50, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g), torch.rand(b, q, 2, generator=g) * 2 - 1


def n_ff(module: torch.nn.Module) -> int:
    return sum(isinstance(m, FeedForward) for m in module.modules())


@pytest.mark.parametrize("changes", [
    {}, {"hidden_dim": 48, "mult": 1}, {"num_decoder_layers": 1}, {"num_decoder_layers": 3, "share_scales": True},
    {"sigma_ls": (16.0,)}, {"sigma_ls": (64.0, 16.0, 4.0)}, {"residual_bicubic": True}, {"patch_size": 4},
    {"spatial_bias": "raster"}, {"spatial_bias": "none"}, {"num_lp_tokens": 5}, {"num_lp_tokens": 200},
])
def test_output_shape(tiny_cfg, changes):
    model = build(dataclasses.replace(tiny_cfg, **changes))
    lr, coords = inputs(b=3, q=37)
    assert model(lr, coords).shape == (3, 37, 3)


def test_geglu_width_is_hidden_times_mult(tiny_cfg):
    for mult in (1, 2, 3):
        model = build(tiny_cfg.replace(mult=mult, num_decoder_layers=2))
        ffs = [m for m in model.decoder.modules() if isinstance(m, FeedForward)]
        assert ffs
        for ff in ffs:
            assert ff.net[0].out_features == tiny_cfg.hidden_dim * mult * 2  # GEGLU input: two halves
            assert ff.net[2].in_features == tiny_cfg.hidden_dim * mult


def test_feedforward_count_follows_depth_and_scales(tiny_cfg):
    # Per scale: bandwidth + modulation stacks of 2*(L-1) FFs each; hv_lins: 2 FFs per scale after the first,
    # whatever L is (the researcher's code; the seed's analysis scaled them with L).
    for layers, scales in [(1, 2), (2, 2), (3, 2), (3, 3), (3, 1), (1, 3)]:
        cfg = tiny_cfg.replace(num_decoder_layers=layers, sigma_ls=tuple(range(8, 8 + 8 * scales, 8)))
        model = build(cfg)
        expected = scales * 2 * 2 * (layers - 1) + (scales - 1) * 2
        assert n_ff(model.decoder) == expected
    assert n_ff(build(ModelConfig()).decoder) == 18  # the baseline: 8 + 8 + 2
    assert n_ff(build(ModelConfig(num_decoder_layers=1)).decoder) == 2  # hv_lins keep their two


def test_hidden_dim_and_mult_grow_parameters(tiny_cfg):
    base = build(tiny_cfg).num_params()
    assert build(tiny_cfg.replace(hidden_dim=64)).num_params() > base
    assert build(tiny_cfg.replace(mult=4)).num_params() > base
    assert build(tiny_cfg.replace(num_decoder_layers=3)).num_params() > base
    assert build(tiny_cfg.replace(num_decoder_layers=1)).num_params() < base


def test_decoder_depth_one_keeps_linear_branches_and_two_hv_feedforwards(tiny_cfg):
    dec = build(tiny_cfg.replace(num_decoder_layers=1)).decoder
    assert all(len(b.blocks.layers) == 0 for b in [*dec.bandwidth_lins, *dec.modulation_lins])
    assert all(len(h.layers) == 2 for h in dec.hv_lins)
    assert all(isinstance(b.lin, torch.nn.Linear) for b in dec.bandwidth_lins)


def test_share_scales_shares_module_objects_and_cuts_parameters(tiny_cfg):
    cfg = tiny_cfg.replace(sigma_ls=(32.0, 16.0, 8.0), num_decoder_layers=3)
    plain, shared = build(cfg), build(cfg.replace(share_scales=True))
    for name in ("bandwidth_lins", "modulation_lins"):
        mods = getattr(shared.decoder, name)
        assert all(m is mods[0] for m in mods)
        assert all(p is q for p, q in zip(mods[0].parameters(), mods[2].parameters()))
        assert len({id(m) for m in getattr(plain.decoder, name)}) == 3
    # Fourier bandwidths stay per scale when weights are shared (sigma divides: 32 is the lowest frequency).
    b = [f.B for f in shared.decoder.bandwidth_features]
    assert len({id(x) for x in b}) == 3 and b[0].abs().mean() < b[2].abs().mean()
    branch = sum(p.numel() for p in plain.decoder.bandwidth_lins[0].parameters()) + \
        sum(p.numel() for p in plain.decoder.modulation_lins[0].parameters())
    assert plain.num_params() - shared.num_params() == 2 * branch  # two of three copies are gone


def test_scale_count_sets_branches_hv_lins_and_skips(tiny_cfg):
    for scales in (1, 2, 4):
        dec = build(tiny_cfg.replace(sigma_ls=tuple(4.0 * (i + 1) for i in range(scales)))).decoder
        assert len(dec.bandwidth_lins) == len(dec.modulation_lins) == len(dec.skips) == len(dec.out_lins) == scales
        assert len(dec.bandwidth_features) == scales
        assert len(dec.hv_lins) == scales - 1


def test_fourier_features_follow_the_researchers_convention():
    """B = randn / sigma (learnable), coords mapped to [0, 1], features [sin, cos](2 pi x B^T)."""
    from scent_search.model.blocks import GaussianFourierFeatures

    torch.manual_seed(0)
    low, high = GaussianFourierFeatures(2, 512, 128.0), GaussianFourierFeatures(2, 512, 2.0)
    assert isinstance(low.B, torch.nn.Parameter) and low.B.shape == (256, 2)
    assert low.B.std().item() == pytest.approx(1 / 128, rel=0.1)  # sigma divides
    assert high.B.std().item() == pytest.approx(1 / 2, rel=0.1)
    coords = torch.rand(5, 2) * 2 - 1
    x = (coords + 1) / 2
    proj = 2 * torch.pi * x @ high.B.t()
    torch.testing.assert_close(high(coords), torch.cat([proj.sin(), proj.cos()], -1))
    corner = high(torch.tensor([[-1.0, -1.0]]))  # the image corner is x = 0: phase 0
    assert torch.equal(corner, torch.cat([torch.zeros(1, 256), torch.ones(1, 256)], -1))


def test_gradients_reach_every_parameter(tiny_cfg):
    for cfg in (tiny_cfg, tiny_cfg.replace(share_scales=True, num_decoder_layers=3), tiny_cfg.replace(residual_bicubic=True),
                tiny_cfg.replace(spatial_bias="raster", num_decoder_layers=1)):
        model = build(cfg)
        lr, coords = inputs()
        model(lr, coords).square().mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert missing == []


@pytest.mark.parametrize("bias", ["grid", "raster", "none"])
def test_chunked_decoding_equals_unchunked(tiny_cfg, bias):
    model = build(tiny_cfg.replace(residual_bicubic=True, spatial_bias=bias)).eval()
    lr, coords = inputs(q=1000)
    with torch.no_grad():
        full = model(lr, coords)
        for chunk in (1000, 333, 64):
            torch.testing.assert_close(model.decode_chunked(lr, coords, chunk=chunk), full, rtol=1e-5, atol=1e-6)


def test_checkpointing_gives_same_gradients(tiny_cfg):
    cfg = tiny_cfg.replace(num_decoder_layers=3)
    lr, coords = inputs()
    grads = []
    for ckpt in (False, True):
        model = build(cfg).set_checkpointing(ckpt)
        model(lr, coords).abs().mean().backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_checkpoint_round_trip(tmp_path, tiny_cfg):
    cfg = tiny_cfg.replace(share_scales=True, sigma_ls=(16.0, 8.0, 4.0))
    model = build(cfg, seed=3).eval()
    path = tmp_path / "m.ckpt"
    save_checkpoint(model, path)
    loaded = load_checkpoint(path).eval()
    assert loaded.cfg == cfg
    assert loaded.decoder.bandwidth_lins[0] is loaded.decoder.bandwidth_lins[2]  # sharing survives
    lr, coords = inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(lr, coords), model(lr, coords), rtol=0, atol=0)


def test_checkpoint_loads_with_weights_only(tmp_path, tiny_cfg):
    path = tmp_path / "m.ckpt"
    save_checkpoint(build(tiny_cfg), path)
    blob = torch.load(path, weights_only=True)  # raises if anything but plain data is stored
    assert blob["config"]["sigma_ls"] == [32.0, 8.0]


def test_non_checkpoint_file_is_refused_by_name(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(ConfigError, match="other.pt"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds(name):
    cfg = preset_config(name)
    assert cfg.hidden_dim in (256, 512)
    with torch.device("meta"):  # full size, no memory
        model = MambaSCENTHybrid(cfg)
    assert model.num_params() > 0


def test_presets_match_the_design():
    base = ModelConfig()
    assert (base.hidden_dim, base.mult, base.num_decoder_layers, base.sigma_ls, base.share_scales) == (512, 4, 3, (128.0, 32.0), False)
    assert (base.dim, base.num_lp_tokens, base.patch_size, base.num_processor_layers) == (256, 256, 2, 4)
    assert preset_config("hidden-256") == base.replace(hidden_dim=256)
    assert preset_config("hidden-256-layers-1") == base.replace(hidden_dim=256, num_decoder_layers=1)
    assert preset_config("mult-2") == base.replace(mult=2)
    assert preset_config("layers-1") == base.replace(num_decoder_layers=1)
    assert preset_config("shared-scales") == base.replace(share_scales=True)
    assert preset_config("one-scale") == base.replace(sigma_ls=(64.0,))
    # The seed's names are aliases and keep their meaning.
    assert preset_config("option-a") == preset_config("solution-2") == preset_config("hidden-256")
    assert preset_config("option-b") == preset_config("hidden-256-layers-1")
    assert preset_config("option-c") == preset_config("solution-1") == preset_config("mult-2")
    assert preset_config("solution-3") == preset_config("layers-1")
    assert preset_config("solution-4") == preset_config("shared-scales")
    assert preset_config("solution-5") == preset_config("one-scale")
    with pytest.raises(ConfigError, match="preset.*nope"):
        preset_config("nope")


@pytest.mark.parametrize("changes, field", [
    ({"sigma_ls": ()}, "sigma_ls"),
    ({"mult": 0}, "mult"),
    ({"num_decoder_layers": 0}, "num_decoder_layers"),
    ({"spatial_bias": "gaussian"}, "spatial_bias"),
    ({"modulation_heads": 0}, "modulation_heads"),
    ({"sigma_ls": (16.0, -1.0)}, "sigma_ls"),
    ({"feature_dim": 63}, "feature_dim"),
])
def test_invalid_config_is_refused_naming_the_field(changes, field):
    with pytest.raises(ConfigError) as e:
        ModelConfig(**changes)
    assert e.value.key == field and field in str(e.value)


def test_from_mapping_refuses_unknown_keys_and_wrong_types():
    with pytest.raises(ConfigError, match="model.hiden_dim: unknown key"):
        from_mapping(ModelConfig, {"hiden_dim": 3}, prefix="model.")
    with pytest.raises(ConfigError, match="spec.toml: model.mult: expected int"):
        from_mapping(ModelConfig, {"mult": "4"}, source="spec.toml", prefix="model.")
    with pytest.raises(ConfigError, match="share_scales: expected bool"):
        from_mapping(ModelConfig, {"share_scales": 1})
    cfg = from_mapping(ModelConfig, {"sigma_ls": [64, 16], "sigma_q": 8})
    assert cfg.sigma_ls == (64.0, 16.0) and cfg.sigma_q == 8.0
    with pytest.raises(ConfigError, match="model.spatial_bias: must be one of"):
        from_mapping(ModelConfig, {"spatial_bias": "cosine"}, prefix="model.")


def test_fourier_features_and_scan_keep_fp32_under_bf16_autocast():
    from scent_search.model import selective_scan
    from scent_search.model.blocks import GaussianFourierFeatures

    torch.manual_seed(0)
    features = GaussianFourierFeatures(2, 64, sigma=128.0)
    coords = torch.rand(4, 100, 2) * 2 - 1
    scan_args = [torch.randn(2, 24, 8), torch.rand(2, 24, 8) * 0.1, -torch.rand(8, 4) - 0.5,
                 torch.randn(2, 24, 4), torch.randn(2, 24, 4), torch.ones(8)]
    plain = features(coords), selective_scan(*scan_args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = features(coords), selective_scan(*scan_args)
    for a, b in zip(plain, mixed):
        assert b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # phases of hundreds of radians, unharmed


# ---- the researcher's structure, pinned ---------------------------------------------------------------


def test_lp_tokens_are_spread_evenly_through_the_raster_sequence():
    from scent_search.model.encoder import lp_layout

    # One LP token per patch (the seed: 256 LP tokens over 16 x 16 patches): each follows its own patch and
    # sits at that patch's centre.
    lay = lp_layout(16, 4, 4)
    assert lay.lp_index.tolist() == [2 * i + 1 for i in range(16)]
    assert lay.patch_index.tolist() == [2 * i for i in range(16)]
    centres = torch.tensor([[-1 + (2 * (j // 4) + 1) / 4, -1 + (2 * (j % 4) + 1) / 4] for j in range(16)])
    torch.testing.assert_close(lay.positions, centres)
    torch.testing.assert_close(lay.raster, (torch.arange(16) + 0.5) / 16)
    # A quarter as many: each sits mid-way along its run of four patches, in the middle of the run in the sequence.
    lay = lp_layout(4, 4, 4)
    assert lay.lp_index.tolist() == [2, 7, 12, 17]  # after patches 0-1, 4-5, 8-9, 12-13 (and the earlier LP tokens)
    torch.testing.assert_close(lay.positions, torch.tensor([[-0.75, 0.0], [-0.25, 0.0], [0.25, 0.0], [0.75, 0.0]]))
    # Any count works at any grid; every token gets exactly one slot.
    for m, gh, gw in [(5, 4, 4), (200, 8, 8), (1, 3, 5), (7, 2, 9)]:
        lay = lp_layout(m, gh, gw)
        assert sorted(lay.lp_index.tolist() + lay.patch_index.tolist()) == list(range(gh * gw + m))
        assert lay.positions[:, 0].min() > -1 and lay.positions[:, 0].max() < 1
        assert lay.positions[:, 1].min() >= -1 and lay.positions[:, 1].max() <= 1


def test_latents_are_the_processor_outputs_at_the_lp_tokens(tiny_cfg):
    model = build(tiny_cfg.replace(num_lp_tokens=64)).eval()
    lr, _ = inputs(b=2, size=16)
    seen = {}

    def keep(name, index=None):
        def hook(module, args, out):
            seen[name] = out if index is None else out[index]
        return hook

    model.processor.register_forward_hook(keep("seq"))
    model.encoder.register_forward_hook(keep("in", 0))
    with torch.no_grad():
        latents = model.encode(lr)
    assert seen["in"].shape == (2, 64 + 64, tiny_cfg.dim)  # 8 x 8 patches + 64 LP tokens in one sequence
    torch.testing.assert_close(latents.tokens, seen["seq"][:, latents.layout.lp_index])
    # The LP tokens enter as learnt vectors (plus their position), not as patch content.
    torch.testing.assert_close(seen["in"][0, latents.layout.lp_index], seen["in"][1, latents.layout.lp_index])


def test_processor_reads_the_sequence_in_both_directions(tiny_cfg):
    """A BiMamba block: the first token's output depends on the last token's input (a one-way scan cannot)."""
    from scent_search.model.processor import BiMamba

    torch.manual_seed(0)
    block = BiMamba(16)
    x = torch.randn(1, 12, 16, requires_grad=True)
    grad_first, = torch.autograd.grad(block(x)[0, 0].sum(), x)
    assert grad_first[0, -1].abs().sum() > 0
    grad_fwd, = torch.autograd.grad(block.forward_mamba(x)[0, 0].sum(), x)
    assert grad_fwd[0, 1:].abs().sum() == 0  # the forward scan alone is causal


@pytest.mark.parametrize("bias", ["grid", "raster"])
def test_spatial_bias_peaks_at_the_querys_own_token(bias):
    from scent_search.model.decoder import BIASES
    from scent_search.model.encoder import lp_layout

    gh = gw = 8
    lay = lp_layout(gh * gw, gh, gw)  # one LP token per patch
    g = torch.Generator().manual_seed(0)
    coords = torch.rand(3, 40, 2, generator=g) * 2 - 1
    own = ((coords[..., 0] + 1) / 2 * gh).floor() * gw + ((coords[..., 1] + 1) / 2 * gw).floor()  # patch index
    values = BIASES[bias]()(coords, lay)  # (3, 40, 64)
    assert values.shape == (3, 40, gh * gw)
    assert torch.equal(values.argmax(-1), own.long())
    assert (values <= 0).all()


def test_grid_bias_strength_is_learnt_and_none_adds_nothing(tiny_cfg):
    grid = build(tiny_cfg).decoder.spatial_bias
    assert [n for n, _ in grid.named_parameters()] == ["log_alpha"]
    assert build(tiny_cfg.replace(spatial_bias="raster")).decoder.spatial_bias.__class__.__name__ == "RasterBias"
    none = build(tiny_cfg.replace(spatial_bias="none")).decoder.spatial_bias
    assert none(torch.zeros(1, 2, 2), None) is None


def _capture(modules: dict[str, torch.nn.Module]) -> tuple[dict, dict]:
    ins, outs = {}, {}

    def keep(name):
        def hook(module, args, out):  # returns None: the output is left as it is
            ins[name], outs[name] = args[0], out
        return hook

    for name, m in modules.items():
        m.register_forward_hook(keep(name))
    return ins, outs


def test_scales_combine_by_a_sum_and_output_through_fourier_skips(tiny_cfg):
    """m_k = ReLU(bandwidth_k + modulation_k); h_k = hv_lins[k-1](m_k + h_{k-1}); rgb = sum_k out_k(h_k + skip_k(gamma_k))."""
    model = build(tiny_cfg.replace(num_decoder_layers=2)).eval()
    dec = model.decoder
    ins, outs = _capture({"b0": dec.bandwidth_lins[0], "b1": dec.bandwidth_lins[1], "m0": dec.modulation_lins[0],
                          "m1": dec.modulation_lins[1], "hv": dec.hv_lins[0], "g0": dec.bandwidth_features[0],
                          "g1": dec.bandwidth_features[1], "s0": dec.skips[0], "s1": dec.skips[1],
                          "o0": dec.out_lins[0], "o1": dec.out_lins[1]})
    lr, coords = inputs(b=2, q=30)
    with torch.no_grad():
        rgb = model(lr, coords)
    m0 = torch.relu(outs["b0"] + outs["m0"])
    m1 = torch.relu(outs["b1"] + outs["m1"])
    torch.testing.assert_close(ins["hv"], m1 + m0)  # h_0 = m_0 joins scale 1 by a sum, not a product
    torch.testing.assert_close(ins["s0"], outs["g0"])  # the skips read the scale's Fourier features directly
    torch.testing.assert_close(ins["s1"], outs["g1"])
    torch.testing.assert_close(ins["o0"], m0 + outs["s0"])
    torch.testing.assert_close(ins["o1"], outs["hv"] + outs["s1"])
    torch.testing.assert_close(rgb, outs["o0"] + outs["o1"])
    assert dec.skips[0].in_features == tiny_cfg.feature_dim and dec.skips[0].out_features == tiny_cfg.hidden_dim


def test_modulation_ca_is_the_researchers_cross_attention(tiny_cfg):
    dec = build(tiny_cfg).decoder
    attn = dec.modulation_ca.fn
    assert attn.heads == 2 and attn.to_q.out_features == 2 * 64  # heads 2, dim_head 64
    assert attn.to_kv.in_features == tiny_cfg.dim and dec.modulation_ca.norm_context is not None
    assert dec.query_lin.in_features == tiny_cfg.feature_dim and dec.query_lin.out_features == tiny_cfg.hidden_dim


@pytest.mark.parametrize("changes", [
    {"sigma_ls": (32.0,), "share_scales": True},  # one scale: nothing to share
    {"sigma_ls": (32.0,), "num_decoder_layers": 1, "mult": 4},  # no FeedForward anywhere: mult changes nothing
    {"sigma_ls": (32.0,), "num_decoder_layers": 1, "mult": 4, "share_scales": True},
])
def test_canonical_configs_build_the_same_model(tiny_cfg, changes):
    cfg = tiny_cfg.replace(**changes)
    canon = cfg.canonical()
    assert canon != cfg and canon.canonical() == canon
    a, b = build(cfg), build(canon)  # the same modules, drawn from the same seed
    assert [(n, p.shape) for n, p in a.named_parameters()] == [(n, p.shape) for n, p in b.named_parameters()]
    lr, coords = inputs()
    with torch.no_grad():
        torch.testing.assert_close(a(lr, coords), b(lr, coords), rtol=0, atol=0)


def test_canonical_keeps_configs_that_differ(tiny_cfg):
    for changes in ({"share_scales": True}, {"mult": 4}, {"num_decoder_layers": 1, "mult": 4}):
        cfg = tiny_cfg.replace(**changes)  # two scales: sharing and mult both change the model
        assert cfg.canonical() == cfg
