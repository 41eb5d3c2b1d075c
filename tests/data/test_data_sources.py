"""Image sources: decoding, conversion, folder search, the default split and the named errors."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scent_search.config import TrainConfig
from scent_search.data import DEFAULT_IMAGES, ImageSource, decode_image, find_images, load_data
from scent_search.errors import DataError

SMALL = TrainConfig(lr_size=8, sample_q=16, val_hr_size=16)  # largest train crop 32, val crop 16


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def _rgb(h=40, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_grayscale_rgba_and_16bit_are_converted_to_rgb(tmp_path):
    gray = np.arange(40 * 48, dtype=np.uint8).reshape(40, 48)
    rgba = np.dstack([_rgb(), np.full((40, 48), 7, np.uint8)])
    g = decode_image(_save(tmp_path / "g.png", gray))
    a = decode_image(_save(tmp_path / "a.png", rgba))
    g16 = decode_image(_save(tmp_path / "g16.png", (gray.astype(np.uint16) * 257)))
    assert g.shape == a.shape == g16.shape == (40, 48, 3) and g.dtype == np.uint8
    assert (g == gray[..., None]).all()
    assert (a == rgba[..., :3]).all()  # alpha dropped, colour kept
    assert (g16 == gray[..., None]).all()  # 16-bit scaled back to 8 bits


def test_undecodable_file_is_a_data_error_naming_it(tmp_path):
    _save(tmp_path / "good.png", _rgb())
    bad = tmp_path / "sub" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(DataError, match="broken.png"):
        load_data(tmp_path)


def test_truncated_jpeg_is_a_data_error_naming_it(tmp_path):
    p = tmp_path / "cut.jpg"
    Image.fromarray(_rgb(64, 64)).save(p, quality=90)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(DataError, match="cut.jpg"):
        decode_image(p)


def test_empty_folder_and_missing_folder_are_data_errors_naming_them(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="empty"):
        load_data(empty)
    with pytest.raises(DataError, match="nowhere"):
        load_data(tmp_path / "nowhere")


def test_image_smaller_than_the_largest_crop_is_named(tmp_path):
    for i in range(3):
        _save(tmp_path / f"ok{i}.png", _rgb(40, 48, i))
    _save(tmp_path / "deep" / "tiny.png", _rgb(31, 100))  # largest HR crop is 8 * 4 = 32
    with pytest.raises(DataError, match="tiny.png"):
        load_data(tmp_path, SMALL)


def test_folder_is_searched_recursively_and_split_deterministically(tmp_path):
    paths = [_save(tmp_path / f"d{i % 3}" / f"im{i:02d}.{'png' if i % 2 else 'jpg'}", _rgb(seed=i)) for i in range(12)]
    (tmp_path / "d0" / "IM_UPPER.PNG").write_bytes((tmp_path / "d1" / "im01.png").read_bytes())
    assert len(find_images(tmp_path)) == 13
    a, b = load_data(tmp_path, SMALL), load_data(tmp_path, SMALL)
    assert a.train.names == b.train.names and a.val.names == b.val.names
    assert len(a.val) == 1 and len(a.train) == 12
    assert not set(a.train.names) & set(a.val.names)
    assert {str(p) for p in paths} <= set(a.train.names) | set(a.val.names)


def test_train_and_val_subfolders_are_the_split(tmp_path):
    _save(tmp_path / "train" / "a.png", _rgb(seed=1))
    _save(tmp_path / "train" / "b.png", _rgb(seed=2))
    _save(tmp_path / "val" / "c.png", _rgb(seed=3))
    split = load_data(tmp_path, SMALL)
    assert [Path(n).name for n in split.train.names] == ["a.png", "b.png"]
    assert [Path(n).name for n in split.val.names] == ["c.png"]


def test_single_image_folder_cannot_be_split(tmp_path):
    _save(tmp_path / "only.png", _rgb())
    with pytest.raises(DataError, match="at least 2"):
        load_data(tmp_path)


def test_default_data_is_the_scikit_image_photos_with_a_fixed_split():
    split = load_data(None)
    names = [Path(n).name for n in split.train.names + split.val.names]
    assert sorted(names) == sorted(n for n, _ in DEFAULT_IMAGES)
    assert all("skimage" in n for n in split.train.names + split.val.names)
    assert {Path(n).name for n in split.val.names} == {"chelsea.png", "coffee.png"}
    assert load_data("default").val.names == split.val.names
    # pixels match a direct decode (the flat buffer keeps each image intact)
    i = [Path(n).name for n in split.train.names].index("astronaut.png")
    direct = decode_image(split.train.names[i])
    assert (split.train.image(i).permute(1, 2, 0).numpy() == direct).all()


def test_image_source_views_each_image_in_the_flat_buffer():
    ims = [_rgb(5, 7, 0), _rgb(9, 4, 1), _rgb(6, 6, 2)]
    src = ImageSource(ims, ["a", "b", "c"])
    for i, im in enumerate(ims):
        assert (src.image(i).permute(1, 2, 0).numpy() == im).all()
