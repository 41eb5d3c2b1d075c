"""LR/HR query sampling and the validation crops: coordinates, targets and LR agree with the HR pixels."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scent_search.data import (ImageSource, QuerySampler, bicubic_upsample, downsample, make_validation_set,
                               pixel_coords)
from scent_search.errors import DataError


def _source(*arrays):
    return ImageSource(list(arrays), [f"im{i}" for i in range(len(arrays))])


def _position_image(h=60, w=56):
    """R = row, G = column, B = 100: every pixel says where it is."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([i, j, np.full_like(i, 100)], -1).astype(np.uint8)


def _coords_to_index(coords, n):
    """(Q, 2) pixel-centre coords -> (Q,) rows, (Q,) cols; also returns how far they are from integers."""
    f = (coords + 1) * n / 2 - 0.5  # inverse of -1 + (2i+1)/n
    return f.round().long(), (f - f.round()).abs().max().item()


def _sampler(src, **kw):
    args = dict(lr_size=8, sample_q=64, scale_min=1.0, scale_max=4.0, seed=0)
    args.update(kw)
    return QuerySampler(src, **args)


def test_pixel_coords_are_row_major_centres_y_first():
    c = pixel_coords(2, 4)  # (8, 2)
    assert c.shape == (8, 2)
    assert torch.allclose(c[:4, 0], torch.full((4,), -0.5))  # first row: y = -1 + 1/2
    assert torch.allclose(c[:4, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))  # x across the columns
    assert torch.allclose(c[4:, 0], torch.full((4,), 0.5))


def test_constant_colour_image_gives_constant_lr_and_targets():
    im = np.empty((50, 45, 3), np.uint8)
    im[:] = (200, 30, 90)
    b = _sampler(_source(im)).sample(6)
    want = torch.tensor([200, 30, 90]) / 255
    assert b.lr.shape == (6, 3, 8, 8) and b.coords.shape == (6, 64, 2) and b.rgb.shape == (6, 64, 3)
    assert torch.allclose(b.rgb, want.expand(6, 64, 3), atol=1e-6)
    assert torch.allclose(b.lr, want[None, :, None, None].expand(6, 3, 8, 8), atol=1e-5)


def test_targets_are_the_hr_pixels_at_their_coords_and_the_crop_is_a_real_augmented_crop():
    im = _position_image()
    b = _sampler(_source(im)).sample(32, with_hr=True)
    seen_aug = set()
    for k in range(32):
        hr = b.hr[k]  # (3, hs, hs), augmented
        hs = hr.shape[-1]
        assert hs == round(8 * b.scale[k].item())
        assert 8 <= hs <= 32
        # coords are pixel centres of the hs x hs HR grid, all distinct
        rows, err_r = _coords_to_index(b.coords[k, :, 0], hs)
        cols, err_c = _coords_to_index(b.coords[k, :, 1], hs)
        assert max(err_r, err_c) < 1e-4
        assert len(set((rows * hs + cols).tolist())) == 64
        assert torch.equal(b.rgb[k], hr[:, rows, cols].T)
        # undo one of the 8 dihedral transforms to find an un-augmented crop of the image
        r_ch, g_ch = (hr[0] * 255).round().long(), (hr[1] * 255).round().long()
        matches = []
        for t in (False, True):
            for v in (False, True):
                for h in (False, True):
                    R, G = (r_ch.T, g_ch.T) if t else (r_ch, g_ch)
                    R, G = (R.flip(0), G.flip(0)) if v else (R, G)
                    R, G = (R.flip(1), G.flip(1)) if h else (R, G)
                    ar = torch.arange(hs)
                    if torch.equal(R - R[0, 0], ar[:, None].expand(hs, hs)) and \
                            torch.equal(G - G[0, 0], ar[None, :].expand(hs, hs)):
                        matches.append((t, v, h))
        assert len(matches) == 1, f"sample {k} is not a dihedral transform of an image crop"
        seen_aug.add(matches[0])
    assert len(seen_aug) >= 4  # flips and transposes are actually drawn


def test_lr_is_the_antialiased_bicubic_downsample_of_the_hr_crop():
    rng = np.random.default_rng(1)
    src = _source(rng.integers(0, 256, (70, 66, 3), dtype=np.uint8), rng.integers(0, 256, (40, 90, 3), dtype=np.uint8))
    b = _sampler(src).sample(16, with_hr=True)
    for k in range(16):
        ref = F.interpolate(b.hr[k][None], size=(8, 8), mode="bicubic", align_corners=False, antialias=True)
        assert torch.allclose(b.lr[k], ref[0].clamp(0, 1), atol=1e-5)


def test_seeded_sampling_repeats_and_seeds_differ():
    src = _source(_position_image())
    a, b, c = _sampler(src, seed=3).sample(4), _sampler(src, seed=3).sample(4), _sampler(src, seed=4).sample(4)
    assert torch.equal(a.lr, b.lr) and torch.equal(a.coords, b.coords) and torch.equal(a.rgb, b.rgb)
    assert not torch.equal(a.coords, c.coords)


def test_scale_range_is_respected():
    b = _sampler(_source(_position_image()), scale_min=2.0, scale_max=3.0, sample_q=16).sample(64)
    assert b.scale.min() >= 2.0 - 1 / 16 and b.scale.max() <= 3.0 + 1 / 16
    with pytest.raises(DataError, match="sample_q"):
        _sampler(_source(_position_image()), sample_q=65)  # smallest crop is 8 x 8


def test_too_small_training_image_is_named():
    with pytest.raises(DataError, match="im1"):
        _sampler(_source(_position_image(), _position_image(31, 80)))


def test_validation_set_is_fixed_and_its_lr_is_a_downsample_of_its_hr():
    rng = np.random.default_rng(2)
    src = _source(*(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(2)))
    v1 = make_validation_set(src, hr_size=24, scales=(2.0, 4.0), n_crops=5)
    v2 = make_validation_set(src, hr_size=24, scales=(2.0, 4.0), n_crops=5)
    assert v1.names == ["im0", "im1", "im0", "im1", "im0"]
    for s, side in ((2.0, 12), (4.0, 6)):
        v = v1.scales[s]
        assert v.hr.shape == (5, 3, 24, 24) and v.lr.shape == (5, 3, side, side) and v.shave == int(s)
        assert torch.equal(v.hr, v2.scales[s].hr)
        assert torch.allclose(v.lr, downsample(v.hr, side))
        assert torch.equal(v.coords, pixel_coords(24, 24))
    assert torch.equal(v1.scales[2.0].hr, v1.scales[4.0].hr)  # the same HR crops at every scale


def test_bicubic_upsample_matches_grid_sample_at_pixel_coords():
    # The model's optional residual reads the LR with grid_sample(lr, coords.flip(-1)): same positions.
    lr = torch.rand(2, 3, 7, 7)
    coords = pixel_coords(20, 20)[None].expand(2, -1, -1)  # (2, 400, 2) as (y, x)
    g = F.grid_sample(lr, coords.flip(-1)[:, :, None], mode="bicubic", padding_mode="border", align_corners=False)
    up = F.interpolate(lr, size=(20, 20), mode="bicubic", align_corners=False)
    assert torch.allclose(g[..., 0], up.flatten(2), atol=1e-5)
    assert torch.allclose(bicubic_upsample(lr, 20), up.clamp(0, 1))


def test_augment_off_keeps_the_crop_orientation():
    b = _sampler(_source(_position_image()), augment=False).sample(16, with_hr=True)
    for hr in b.hr:
        r_ch, g_ch = (hr[0] * 255).round().long(), (hr[1] * 255).round().long()  # R = image row, G = image col
        assert (r_ch.diff(dim=0) == 1).all() and (g_ch.diff(dim=1) == 1).all()
