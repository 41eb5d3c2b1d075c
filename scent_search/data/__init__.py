"""Image sources and LR/HR query sampling (docs/design.md, "Training and PSNR").

Public surface:
- `load_data(spec, train_cfg=None) -> DataSplit` (train / val `ImageSource`s); spec None/"default" or a folder.
- `QuerySampler(source, ...).sample(B) -> Batch` (lr, coords, rgb): random training samples.
- `make_validation_set(source, ...) -> ValidationSet`: fixed validation crops per scale.
- `pixel_coords`, `downsample`, `bicubic_upsample`: the coordinate and resampling conventions.
"""

from scent_search.data.sampling import (Batch, QuerySampler, ValidationSet, ValScale, bicubic_upsample,
                                        downsample, make_validation_set, pixel_coords)
from scent_search.data.sources import (DATA_SOURCES, DEFAULT_IMAGES, DataSplit, ImageSource, decode_image,
                                       find_images, load_data)

__all__ = ["Batch", "QuerySampler", "ValidationSet", "ValScale", "bicubic_upsample", "downsample",
           "make_validation_set", "pixel_coords", "DATA_SOURCES", "DEFAULT_IMAGES", "DataSplit", "ImageSource",
           "decode_image", "find_images", "load_data"]
