"""Study specs: every shipped spec loads, and a bad one is refused before anything runs, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from scent_search.errors import ConfigError
from scent_search.search import StudySpec, load_spec, packaged_default_spec

from tests.search.conftest import write_spec

REPO = Path(__file__).resolve().parents[2]


def test_packaged_default_is_the_studies_default():
    """One source of truth: the copy inside the package is byte-identical to studies/default.toml."""
    assert packaged_default_spec().read_bytes() == (REPO / "studies" / "default.toml").read_bytes()


@pytest.mark.parametrize("name", ["default.toml", "seed-40gb.toml"])
def test_shipped_specs_load(name):
    spec = load_spec(REPO / "studies" / name)
    assert spec.budget_gib > 0 and spec.n_trials >= 1


def test_seed_spec_is_the_researchers_situation():
    spec = load_spec(REPO / "studies" / "seed-40gb.toml")
    assert (spec.budget_gib, spec.target.batch_size, spec.target.queries, spec.target.lr_size) == (40, 64, 1024, 32)


def test_name_defaults_to_the_file_stem(tmp_path):
    path = tmp_path / "wide.toml"
    path.write_text("budget_gib = 2\n")
    assert load_spec(path).name == "wide"


BAD = [
    ("colour = 3\n", "colour", "unknown key"),
    ("[space]\nhidden_dim = []\n", "space.hidden_dim", "at least one choice"),
    ("[space]\nsigma_ls = [[64.0], []]\n", "space.sigma_ls", "non-empty"),
    ("[space]\nhidden_dim = 64\n", "space.hidden_dim", "expected"),
    ("[space]\nshare_scales = [0, 1]\n", "space.share_scales", "expected"),
    ("[space]\nmult = [2, 2]\n", "space.mult", "duplicate"),
    ("[space]\nprecision = [\"fp16\"]\n", "space.precision", "fp32"),
    ("[space]\nlr = [1e-3, 1e-4]\n", "space.lr", "low < high"),
    ("[target]\nlr_size = 15\n", "target.lr_size", "not divisible by model.patch_size"),
    ("[target]\nbatch_size = \"64\"\n", "target.batch_size", "expected int"),
    ("[model]\nhidden_dim = 64\n", "model.hidden_dim", "is searched"),
    ("[model]\nsize = 64\n", "model.size", "unknown key"),
    ("[train]\nprecision = \"bf16\"\n", "train.precision", "[target]"),
    ("[sampler]\nname = \"grid\"\n", "sampler.name", "unknown sampler"),
    ("[pruner]\nname = \"median\"\noptions = { warmup = 2 }\n", "pruner.options.warmup", "unknown option"),
    ("[heartbeat]\ninterval = 10\ngrace_period = 5\n", "heartbeat.grace_period", "must be >"),
    ("objectives = [\"psnr\", \"flops\"]\n", "objectives", "must be ['psnr'] or ['psnr', 'peak_memory']"),
    ("objectives = [\"peak_memory\", \"psnr\"]\n", "objectives", "must be"),
    ("objectives = []\n", "objectives", "must be"),
    ("objectives = \"psnr\"\n", "objectives", "expected"),
    ("objectives = [\"psnr\", \"peak_memory\"]\n[pruner]\nname = \"median\"\n", "pruner.name", "cannot prune"),
]


@pytest.mark.parametrize("text, key, words", BAD, ids=[b[1] for b in BAD])
def test_bad_spec_names_the_key_and_file(tmp_path, text, key, words):
    path = tmp_path / "bad.toml"
    path.write_text("budget_gib = 4\n" + text)
    with pytest.raises(ConfigError) as e:
        load_spec(path)
    assert e.value.key == key
    assert str(e.value).startswith(f"{path}: {key}: ") and words in str(e.value)


@pytest.mark.parametrize("budget", ["0", "-1"])
def test_budget_must_be_positive(tmp_path, budget):
    path = tmp_path / "b.toml"
    path.write_text(f"budget_gib = {budget}\n")
    with pytest.raises(ConfigError, match="budget_gib: must be > 0"):
        load_spec(path)


def test_missing_budget_and_bad_toml(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text("name = 'x'\n")
    with pytest.raises(ConfigError, match="budget_gib: required"):
        load_spec(path)
    path.write_text("budget_gib = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_spec(path)


def test_spec_round_trips_through_its_dict(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    again = StudySpec.from_dict({k: v for k, v in spec.to_dict().items()}, source=spec.source)
    assert again == spec


def test_spatial_bias_is_an_opt_in_knob(tmp_path):
    """Fixed in [model] unless [space] lists it; searched, its choices are checked and it sets the model."""
    from scent_search.search import load_spec

    base = "name = 's'\nbudget_gib = 1.0\n"
    fixed = tmp_path / "fixed.toml"
    fixed.write_text(base + "[model]\nspatial_bias = 'raster'\n")
    spec = load_spec(fixed)
    assert spec.space["spatial_bias"] is None and spec.model.spatial_bias == "raster"
    assert spec.to_dict()["model"]["spatial_bias"] == "raster"  # kept for the resume check
    searched = tmp_path / "searched.toml"
    searched.write_text(base + "[space]\nspatial_bias = ['grid', 'none']\n")
    assert load_spec(searched).space["spatial_bias"] == ("grid", "none")
    both = tmp_path / "both.toml"
    both.write_text(base + "[model]\nspatial_bias = 'grid'\n[space]\nspatial_bias = ['grid', 'none']\n")
    with pytest.raises(ConfigError, match="model.spatial_bias: is searched"):
        load_spec(both)
    bad = tmp_path / "bad.toml"
    bad.write_text(base + "[space]\nspatial_bias = ['grid', 'cosine']\n")
    with pytest.raises(ConfigError, match="space.spatial_bias: choices must be in"):
        load_spec(bad)


def test_objectives_default_to_psnr_and_multi_objective_prunes_nothing(tmp_path):
    single = load_spec(write_spec(tmp_path))
    assert (single.objectives, single.directions, single.metric_names) == (("psnr",), ["maximize"], ["PSNR ×4 (dB)"])
    mo = load_spec(write_spec(tmp_path, name="mo.toml", multi_objective=True))
    assert mo.multi_objective and mo.directions == ["maximize", "minimize"]
    assert mo.metric_names == ["PSNR ×4 (dB)", "peak memory (GiB)"]
    assert mo.pruner.name == "nop"  # no [pruner]: nothing prunes
    assert StudySpec.from_dict(mo.to_dict(), source=mo.source) == mo
