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
    # Per scale: bandwidth + modulation stacks of 2*(L-1) FFs each; hv_lins: (L-1) FFs for each scale after the first.
    for layers, scales in [(1, 2), (2, 2), (3, 2), (3, 3), (3, 1)]:
        cfg = tiny_cfg.replace(num_decoder_layers=layers, sigma_ls=tuple(range(8, 8 + 8 * scales, 8)))
        model = build(cfg)
        expected = scales * 2 * 2 * (layers - 1) + (scales - 1) * (layers - 1)
        assert n_ff(model.decoder) == expected
    assert n_ff(build(ModelConfig()).decoder) == 18  # the baseline: 8 + 8 + 2


def test_hidden_dim_and_mult_grow_parameters(tiny_cfg):
    base = build(tiny_cfg).num_params()
    assert build(tiny_cfg.replace(hidden_dim=64)).num_params() > base
    assert build(tiny_cfg.replace(mult=4)).num_params() > base
    assert build(tiny_cfg.replace(num_decoder_layers=3)).num_params() > base
    assert build(tiny_cfg.replace(num_decoder_layers=1)).num_params() < base


def test_decoder_depth_one_is_attention_linear_products_skips(tiny_cfg):
    dec = build(tiny_cfg.replace(num_decoder_layers=1)).decoder
    assert n_ff(dec) == 0
    assert all(len(h.layers) == 0 for h in dec.hv_lins)
    assert all(isinstance(b.lin, torch.nn.Linear) for b in dec.bandwidth_lins)


def test_share_scales_shares_module_objects_and_cuts_parameters(tiny_cfg):
    cfg = tiny_cfg.replace(sigma_ls=(32.0, 16.0, 8.0), num_decoder_layers=3)
    plain, shared = build(cfg), build(cfg.replace(share_scales=True))
    for name in ("bandwidth_lins", "modulation_lins"):
        mods = getattr(shared.decoder, name)
        assert all(m is mods[0] for m in mods)
        assert all(p is q for p, q in zip(mods[0].parameters(), mods[2].parameters()))
        assert len({id(m) for m in getattr(plain.decoder, name)}) == 3
    # Fourier bandwidths stay per scale when weights are shared.
    b = [f.B for f in shared.decoder.bandwidth_features]
    assert not torch.equal(b[0] / 32.0, b[2] / 8.0) or b[0].std() > b[2].std()
    branch = sum(p.numel() for p in plain.decoder.bandwidth_lins[0].parameters()) + \
        sum(p.numel() for p in plain.decoder.modulation_lins[0].parameters())
    assert plain.num_params() - shared.num_params() == 2 * branch  # two of three copies are gone


def test_scale_count_sets_branches_hv_lins_and_skips(tiny_cfg):
    for scales in (1, 2, 4):
        dec = build(tiny_cfg.replace(sigma_ls=tuple(4.0 * (i + 1) for i in range(scales)))).decoder
        assert len(dec.bandwidth_lins) == len(dec.modulation_lins) == len(dec.skips) == scales
        assert len(dec.bandwidth_features) == scales
        assert len(dec.hv_lins) == scales - 1


def test_fourier_bandwidth_follows_sigma(tiny_cfg):
    dec = build(tiny_cfg.replace(feature_dim=256, sigma_ls=(64.0, 2.0))).decoder
    s_hi, s_lo = (f.B.std().item() for f in dec.bandwidth_features)
    assert s_hi == pytest.approx(64.0, rel=0.2) and s_lo == pytest.approx(2.0, rel=0.2)


def test_gradients_reach_every_parameter(tiny_cfg):
    for cfg in (tiny_cfg, tiny_cfg.replace(share_scales=True, num_decoder_layers=3), tiny_cfg.replace(residual_bicubic=True)):
        model = build(cfg)
        lr, coords = inputs()
        model(lr, coords).square().mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert missing == []


def test_chunked_decoding_equals_unchunked(tiny_cfg):
    model = build(tiny_cfg.replace(residual_bicubic=True)).eval()
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
    assert preset_config("option-a") == preset_config("solution-2") == base.replace(hidden_dim=256)
    assert preset_config("option-b") == base.replace(hidden_dim=256, num_decoder_layers=1)
    assert preset_config("option-c") == preset_config("solution-1") == base.replace(mult=2)
    assert preset_config("solution-3") == base.replace(num_decoder_layers=1)
    assert preset_config("solution-4") == base.replace(share_scales=True)
    assert preset_config("solution-5").num_scales == 1
    with pytest.raises(ConfigError, match="preset.*nope"):
        preset_config("nope")


@pytest.mark.parametrize("changes, field", [
    ({"hidden_dim": 511}, "hidden_dim"),  # not divisible by modulation_heads=2
    ({"sigma_ls": ()}, "sigma_ls"),
    ({"mult": 0}, "mult"),
    ({"num_decoder_layers": 0}, "num_decoder_layers"),
    ({"dim": 100}, "dim"),  # not divisible by encoder_heads=8
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
    with pytest.raises(ConfigError, match="model.hidden_dim: 510 is not divisible"):
        from_mapping(ModelConfig, {"hidden_dim": 510, "modulation_heads": 4}, prefix="model.")


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
