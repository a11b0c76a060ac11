"""How every image file is read: one rule from any PIL mode to a float tensor in [0, 1] with the channels
the network takes. Training and evaluation folders, predict files and export's verification images all
come through :func:`read_image`, and every file check through :func:`check_image_file`.

The rule:

- **size**: more than :data:`MAX_PIXELS` pixels (PIL's decompression-bomb threshold) is refused by the
  header, before anything is decoded;
- **orientation**: the EXIF orientation tag is applied (a photo taken sideways is read upright);
- **value range**: each mode's whole range maps onto [0, 1], never clipped:

  ============================ =====================================================================
  ``1``                        0 and 1
  ``L``, ``P``, ``RGB``, ...   8-bit values / 255
  ``I;16`` (any byte order)    16-bit values / 65535
  ``I`` (32-bit integers)      / 65535 when every value is in [0, 65535] (16-bit data, as PNG and TIFF
                               readers give it); refused otherwise: no range to scale by
  ``F`` (32-bit floats)        as they are when every value is in [0, 1]; refused otherwise
  ============================ =====================================================================

- **palette** (``P``, ``PA``): expanded to the palette's colours (and its transparency, if it has one);
- **colour spaces**: ``YCbCr`` and ``CMYK`` become RGB by PIL's standard formulas (CMYK without a colour
  profile: R = 255 - min(255, C + K), ...); ``RGBX`` drops its padding;
- **alpha** (``LA``, ``PA``, ``RGBA``): composited over black, value x alpha, so a transparent pixel is
  0, as zero padding is; premultiplied ``La`` and ``RGBa`` already are;
- **channels**: grayscale for a 3-channel network is replicated to R = G = B; colour for a 1-channel
  network is taken only when R = G = B (a gray image stored as colour), and refused otherwise.

Any other mode (``LAB``, ``HSV``, ...) is refused with the file and its mode named.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from spe_lightning.core.errors import InputError, summarize

MAX_PIXELS = Image.MAX_IMAGE_PIXELS
"""Width x height above which an image is refused: PIL's own decompression-bomb threshold."""
EIGHT_BIT = ("L", "P", "RGB", "CMYK", "YCbCr", "RGBX", "LA", "PA", "RGBA", "La", "RGBa")
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
MODES = ("1", *EIGHT_BIT, *SIXTEEN_BIT, "I", "F")
"""Every PIL mode the rule maps."""
CHANNELS = (1, 3)


def check_image_file(path: str | Path) -> str:
    """Read the header only: the image's mode, or an :class:`InputError` naming the file (not an image, a
    truncated or corrupt header, too many pixels, a mode the rule does not map)."""
    try:
        with Image.open(path) as image:
            mode, (width, height) = image.mode, image.size
            image.verify()  # the header, and for PNG every chunk's CRC
    except Image.DecompressionBombError as err:  # PIL's own refusal, at twice its threshold
        raise InputError(f"image {path} is too large to decode safely ({summarize(err)})") from None
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as err:
        raise InputError(
            f"cannot read image {path} ({summarize(err, with_type=True)}); delete or replace it"
        ) from err
    if width * height > MAX_PIXELS:
        raise InputError(
            f"image {path} is {width} x {height} = {width * height:,} pixels, over the limit of "
            f"{MAX_PIXELS:,} (PIL's decompression-bomb threshold): refused by its header, before decoding; "
            "downscale it"
        )
    if mode not in MODES:
        raise InputError(
            f"image {path} has PIL mode {mode}, which is not read (readable: {', '.join(MODES)})"
        )
    return mode


def read_image(path: str | Path, channels: int) -> torch.Tensor:
    """``path`` as a float32 tensor C x H x W in [0, 1] with ``channels`` (1 or 3) channels, by the rule."""
    if channels not in CHANNELS:
        raise InputError(f"channels={channels!r} is not allowed; images are read with 1 or 3 channels")
    check_image_file(path)
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)
            values = _values(upright, path)
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError) as err:  # a body that fails to decode (a truncated JPEG)
        raise InputError(f"cannot decode image {path} ({summarize(err)}); delete or replace it") from err
    return torch.from_numpy(_to_channels(values, channels, path)).permute(2, 0, 1).contiguous()


def _values(image: Image.Image, path: str | Path) -> np.ndarray:
    """H x W x C float32 values in [0, 1] of an upright image, alpha composited, palettes expanded."""
    mode = image.mode
    if mode == "P" or mode == "PA":
        palette = image.palette.mode if image.palette is not None else "RGB"
        transparent = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if transparent else ("L" if palette == "L" else "RGB"))
        mode = image.mode
    if mode in ("CMYK", "YCbCr", "RGBX"):
        image, mode = image.convert("RGB"), "RGB"
    array = np.asarray(image)
    if mode == "1":
        values = array.astype(np.float32)
    elif mode in SIXTEEN_BIT:
        values = array.astype(np.float32) / 65535.0
    elif mode == "I":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 65535:
            raise InputError(
                f"image {path} (PIL mode I, 32-bit integers) holds values from {low} to {high}: outside "
                "[0, 65535] there is no bit depth to scale by; save it as 8- or 16-bit"
            )
        values = array.astype(np.float32) / 65535.0
    elif mode == "F":
        low, high = float(np.nanmin(array)), float(np.nanmax(array))
        if not np.isfinite(array).all() or low < 0.0 or high > 1.0:
            raise InputError(
                f"image {path} (PIL mode F, 32-bit floats) holds values from {low:g} to {high:g}: float "
                "images are read as they are, so their values must be in [0, 1]"
            )
        values = array.astype(np.float32)
    else:
        values = array.astype(np.float32) / 255.0
    values = values[..., None] if values.ndim == 2 else values
    if mode in ("LA", "RGBA"):  # straight alpha: over black
        values = values[..., :-1] * values[..., -1:]
    elif mode in ("La", "RGBa"):  # premultiplied: over black already
        values = values[..., :-1]
    return values


def _to_channels(values: np.ndarray, channels: int, path: str | Path) -> np.ndarray:
    found = values.shape[-1]
    if found == channels:
        return values
    if found == 1:  # grayscale for a colour network: R = G = B
        return np.repeat(values, channels, axis=-1)
    if not (
        np.array_equal(values[..., 0], values[..., 1]) and np.array_equal(values[..., 0], values[..., 2])
    ):
        raise InputError(
            f"image {path} is in colour, and the network takes 1 channel (grayscale): colour is not reduced "
            "to gray silently; convert the image to grayscale first"
        )
    return values[..., :1]
