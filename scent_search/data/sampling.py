"""LR/HR query sampling for training (LIIF's protocol, docs/design.md, "Training and PSNR") and the fixed validation crops.

Coordinates (see docs/internals.md, "Coordinates"): for an image of n_rows x n_cols pixels, pixel (i, j)
has coords (y, x) = (-1 + (2i+1)/n_rows, -1 + (2j+1)/n_cols): pixel centres in (-1, 1), row first.
`F.grid_sample` wants (x, y), so a bicubic lookup is `grid_sample(lr, coords.flip(-1), align_corners=False)`.

Images are in [0, 1] (uint8 / 255). LR inputs are antialiased bicubic downsamples, clamped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scent_search.data.sources import ImageSource
from scent_search.errors import DataError


def pixel_coords(n_rows: int, n_cols: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Pixel-centre coords of an n_rows x n_cols grid, row-major: (n_rows*n_cols, 2) as (y, x) in (-1, 1)."""
    y = -1 + (2 * torch.arange(n_rows, device=device, dtype=torch.float32) + 1) / n_rows  # (n_rows,)
    x = -1 + (2 * torch.arange(n_cols, device=device, dtype=torch.float32) + 1) / n_cols  # (n_cols,)
    return torch.stack(torch.meshgrid(y, x, indexing="ij"), -1).reshape(-1, 2)


def downsample(hr: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic downsample (B, 3, H, W) -> (B, 3, h, w), clamped to [0, 1]."""
    size = (size, size) if isinstance(size, int) else size
    return F.interpolate(hr, size=size, mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)


def bicubic_upsample(lr: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Plain bicubic upsample (B, 3, h, w) -> (B, 3, H, W), clamped to [0, 1]: the baseline every PSNR sits beside.

    Same sampling positions as `grid_sample(lr, pixel_coords(H, W).flip(-1), mode="bicubic",
    align_corners=False)`, the model's optional residual.
    """
    size = (size, size) if isinstance(size, int) else size
    return F.interpolate(lr, size=size, mode="bicubic", align_corners=False).clamp_(0, 1)


def _downsample_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """The (n_out, n_in) matrix of PyTorch's 1-D antialiased bicubic resize n_in -> n_out.

    The 2-D resize is separable, so downsample(x) == D @ x @ D.T for a square crop (checked in tests).
    Resizing the identity along one axis reads the weights off (the other axis is resized n_in -> n_in,
    which is exactly the identity for the cubic kernel).
    """
    eye = torch.eye(n_in, dtype=torch.float64).view(1, 1, n_in, n_in)
    return F.interpolate(eye, size=(n_in, n_out), mode="bicubic", align_corners=False, antialias=True)[0, 0].T


@dataclass
class Batch:
    """One training batch. lr: (B, 3, lr, lr); coords: (B, Q, 2) as (y, x); rgb: (B, Q, 3) targets; scale: (B,).

    hr: only with `sample(..., with_hr=True)` (for tests): the augmented HR crops, a list of (3, hs, hs).
    """

    lr: torch.Tensor
    coords: torch.Tensor
    rgb: torch.Tensor
    scale: torch.Tensor
    hr: list[torch.Tensor] | None = None


class QuerySampler:
    """Random training samples, all drawn and built batched on `device` (no per-sample or per-pixel loops).

    Per sample: image i uniform over the source; scale s ~ U[scale_min, scale_max]; HR crop side
    hs = round(lr_size * s) at a uniform position; LR = antialiased bicubic downsample of the crop to
    lr_size; a random element of the dihedral group (horizontal flip, vertical flip, transpose) applied to
    both (unless augment=False); sample_q distinct HR pixels of the augmented crop, their pixel-centre
    coords and RGB.

    Deterministic under `seed`: the per-sample draws come from a CPU generator, the query draws from a
    generator on `device`.
    """

    def __init__(self, source: ImageSource, *, lr_size: int = 32, sample_q: int = 1024, scale_min: float = 1.0,
                 scale_max: float = 4.0, augment: bool = True, device: torch.device | str = "cpu", seed: int = 0,
                 buffer_on_device_max_bytes: int = 2**30):
        self.source, self.lr_size, self.sample_q, self.augment = source, lr_size, sample_q, augment
        self.scale_min, self.scale_max = scale_min, scale_max
        self.device = torch.device(device)
        self.hs_min = round(lr_size * scale_min)
        self.hs_max = round(lr_size * scale_max)  # P: the padded crop side
        if sample_q > self.hs_min ** 2:
            raise DataError(f"sample_q={sample_q} exceeds the {self.hs_min}x{self.hs_min} pixels of the smallest "
                            f"HR crop (lr_size={lr_size}, scale_min={scale_min})")
        source.check_min_side(self.hs_max, f"training (HR crop of lr_size*scale_max = {self.hs_max})")
        # Image pixels stay on the host when they would crowd the device (e.g. all of DIV2K); the crop
        # gather then runs on the host and only (B, 3, P, P) uint8 crosses over.
        small = source.buffer.numel() <= buffer_on_device_max_bytes
        self.buffer = source.buffer.to(self.device) if small else source.buffer
        self.heights, self.widths, self.offsets = source.heights, source.widths, source.offsets
        # (n_sizes, lr, P): one zero-padded downsample matrix per HR side hs_min..hs_max.
        mats = torch.zeros(self.hs_max - self.hs_min + 1, lr_size, self.hs_max, dtype=torch.float64)
        for k, hs in enumerate(range(self.hs_min, self.hs_max + 1)):
            mats[k, :, :hs] = _downsample_matrix(hs, lr_size)
        self.down = mats.float().to(self.device)
        self.gen = torch.Generator().manual_seed(seed)
        self.gen_q = torch.Generator(device=self.device).manual_seed(seed + 1)

    def sample(self, batch_size: int, with_hr: bool = False) -> Batch:
        B, P, Q, dev = batch_size, self.hs_max, self.sample_q, self.device
        g = self.gen
        # ---- per-sample draws (CPU generator), all (B,)
        img = torch.randint(len(self.source), (B,), generator=g)
        s = self.scale_min + (self.scale_max - self.scale_min) * torch.rand(B, generator=g, dtype=torch.float64)
        hs = torch.round(self.lr_size * s).long().clamp_(self.hs_min, self.hs_max)
        H, W, off = self.heights[img], self.widths[img], self.offsets[img]
        y0 = (torch.rand(B, generator=g, dtype=torch.float64) * (H - hs + 1)).long().clamp_max_(H - hs)
        x0 = (torch.rand(B, generator=g, dtype=torch.float64) * (W - hs + 1)).long().clamp_max_(W - hs)
        hflip, vflip, transp = ((torch.rand(3, B, generator=g) < 0.5) & self.augment).to(dev)  # 3 x (B,)

        # ---- gather the crops into a P x P frame (rows/cols >= hs repeat the last one; their
        # downsample weights are 0 and they are never queried)
        r = torch.arange(P)
        rows = y0[:, None] + torch.minimum(r[None], hs[:, None] - 1)  # (B, P)
        cols = x0[:, None] + torch.minimum(r[None], hs[:, None] - 1)  # (B, P)
        idx = off[:, None, None] + rows[:, :, None] * W[:, None, None] + cols[:, None, :]  # (B, P, P)
        crop = self.buffer[:, idx.to(self.buffer.device)].to(dev, non_blocking=True)  # (3, B, P, P) uint8
        crop = crop.permute(1, 0, 2, 3).float().div_(255)  # (B, 3, P, P)
        hs_d = hs.to(dev)

        # ---- LR: D @ crop @ D^T with the per-sample downsample matrix; then augment
        D = self.down[(hs - self.hs_min).to(dev)]  # (B, lr, P)
        lr = torch.einsum("bip,bcpq,bjq->bcij", D, crop, D).clamp_(0, 1)  # (B, 3, lr, lr)
        lr = torch.where(hflip[:, None, None, None], lr.flip(-1), lr)
        lr = torch.where(vflip[:, None, None, None], lr.flip(-2), lr)
        lr = torch.where(transp[:, None, None, None], lr.transpose(-1, -2), lr)

        # ---- queries: Q distinct positions p < hs^2 of the augmented crop (row-major, width hs)
        noise = torch.rand(B, P * P, device=dev, generator=self.gen_q)
        noise.masked_fill_(torch.arange(P * P, device=dev)[None] >= (hs_d * hs_d)[:, None], 2.0)
        p = noise.topk(Q, dim=1, largest=False).indices  # (B, Q)
        qi, qj = p // hs_d[:, None], p % hs_d[:, None]  # (B, Q) row, col in the augmented crop
        hs_f = hs_d[:, None].float()
        coords = torch.stack([-1 + (2 * qi + 1) / hs_f, -1 + (2 * qj + 1) / hs_f], -1)  # (B, Q, 2) (y, x)
        # Undo the augmentation to find each query's pixel in the un-augmented crop: the augmented crop is
        # T(V(H(crop))), so invert the transpose first, then the flips.
        t, v, h = transp[:, None], vflip[:, None], hflip[:, None]
        ci, cj = torch.where(t, qj, qi), torch.where(t, qi, qj)
        ci = torch.where(v, hs_d[:, None] - 1 - ci, ci)
        cj = torch.where(h, hs_d[:, None] - 1 - cj, cj)
        rgb = crop.flatten(2).gather(2, (ci * P + cj)[:, None].expand(B, 3, Q)).transpose(1, 2)  # (B, Q, 3)

        hr = None
        if with_hr:
            hr = []
            for b in range(B):  # test helper only: B small tensors, not on the training path
                c = crop[b, :, :hs[b], :hs[b]]
                c = c.flip(-1) if hflip[b] else c
                c = c.flip(-2) if vflip[b] else c
                hr.append(c.transpose(-1, -2) if transp[b] else c)
        return Batch(lr=lr, coords=coords, rgb=rgb, scale=(hs.double() / self.lr_size).to(dev), hr=hr)


@dataclass
class ValScale:
    """Validation crops at one scale. lr: (N, 3, h, w); hr: (N, 3, H, W); coords: (H*W, 2); shave in HR pixels."""

    scale: float
    lr: torch.Tensor
    hr: torch.Tensor
    coords: torch.Tensor
    shave: int


@dataclass
class ValidationSet:
    """Fixed validation crops: the same HR crops at every scale, LR = antialiased bicubic downsample.

    scales: scale -> ValScale. `names`: the source image of each crop.
    """

    scales: dict[float, ValScale]
    names: list[str]

    def to(self, device: torch.device | str) -> "ValidationSet":
        return ValidationSet({s: ValScale(v.scale, v.lr.to(device), v.hr.to(device), v.coords.to(device), v.shave)
                              for s, v in self.scales.items()}, self.names)


VAL_SEED = 20240531  # fixed: every trial and study scores on the same crops


def make_validation_set(source: ImageSource, *, hr_size: int = 128, scales: tuple[float, ...] = (4.0,),
                        n_crops: int = 16, device: torch.device | str = "cpu") -> ValidationSet:
    """n_crops HR crops of hr_size x hr_size, dealt round-robin over the images at fixed random positions.

    For scale s the LR side is round(hr_size / s) (x4 at 128 -> 32) and the PSNR border shave is round(s).
    The positions depend only on the source and hr_size, never on a trial's seed.
    """
    source.check_min_side(hr_size, f"validation (HR crop {hr_size})")
    g = torch.Generator().manual_seed(VAL_SEED)
    crops, names = [], []
    for k in range(n_crops):
        i = k % len(source)
        im = source.image(i)  # (3, H, W) uint8
        y0 = int(torch.randint(im.shape[1] - hr_size + 1, (1,), generator=g))
        x0 = int(torch.randint(im.shape[2] - hr_size + 1, (1,), generator=g))
        crops.append(im[:, y0:y0 + hr_size, x0:x0 + hr_size])
        names.append(source.names[i])
    hr = torch.stack(crops).float().div_(255)  # (N, 3, hr, hr)
    out = {}
    for s in scales:
        side = round(hr_size / s)
        if side < 1:
            raise DataError(f"validation scale x{s} leaves no LR pixels of a {hr_size}-pixel crop")
        out[float(s)] = ValScale(float(s), downsample(hr, side), hr, pixel_coords(hr_size, hr_size), round(s))
    return ValidationSet(out, names).to(device)
