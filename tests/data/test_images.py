"""The one rule for reading an image: every PIL mode written as a real file and read back, against the
rule written out here from the file's own pixel values; orientation; sizes; refusals that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spe_lightning.core.errors import InputError
from spe_lightning.data.images import MAX_PIXELS, check_image_file, read_image

RNG = np.random.default_rng(7)
GRAY8 = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
RGB8 = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
ALPHA8 = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
GRAY16 = RNG.integers(0, 65536, (5, 6), dtype=np.uint16)


def as_tensor(values: np.ndarray) -> torch.Tensor:
    """H x W (x C) float values as a C x H x W tensor."""
    values = values[..., None] if values.ndim == 2 else values
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).permute(2, 0, 1)


def gray_to(values: np.ndarray, channels: int) -> torch.Tensor:
    return as_tensor(values).expand(channels, -1, -1)


def write(path: Path, image: Image.Image) -> Path:
    image.save(path)
    return path


def palette_image() -> Image.Image:
    palette = RNG.integers(0, 256, 768, dtype=np.uint8)
    image = Image.fromarray(RNG.integers(0, 256, (5, 6), dtype=np.uint8), mode="P")
    image.putpalette(palette.tolist())
    return image


# mode -> (how to make the file, its name, the expected tensor for a 1- and a 3-channel network)
def cases(tmp: Path) -> dict[str, tuple[Path, torch.Tensor | None, torch.Tensor]]:
    gray, rgb, alpha = GRAY8 / 255, RGB8 / 255, ALPHA8 / 255
    bilevel = GRAY8 > 127
    palette = palette_image()
    palette_rgb = np.asarray(palette.convert("RGB")) / 255
    transparent = palette.copy()
    transparent.info["transparency"] = 3  # colour 3 is transparent
    seen_through = np.asarray(transparent.convert("RGBA")) / 255
    palette_alpha = Image.merge("PA", (palette, Image.fromarray(ALPHA8)))
    palette_alpha.putpalette(palette.getpalette())
    palette_alpha_rgba = np.asarray(palette_alpha.convert("RGBA")) / 255
    cmyk = Image.fromarray(RNG.integers(0, 256, (5, 6, 4), dtype=np.uint8), mode="CMYK")
    ycbcr = Image.fromarray(RGB8, mode="RGB").convert("YCbCr")
    floats = RNG.random((5, 6)).astype(np.float32)
    ints = GRAY16.astype(np.int32)
    over_black = rgb * alpha[..., None]
    return {
        "1": (write(tmp / "bilevel.png", Image.fromarray(bilevel)), gray_to(bilevel, 1), gray_to(bilevel, 3)),
        "L": (write(tmp / "gray.png", Image.fromarray(GRAY8)), gray_to(gray, 1), gray_to(gray, 3)),
        "LA": (
            write(tmp / "gray_alpha.png", Image.fromarray(np.stack((GRAY8, ALPHA8), -1), mode="LA")),
            gray_to(gray * alpha, 1),
            gray_to(gray * alpha, 3),
        ),
        "P": (write(tmp / "palette.png", palette), None, as_tensor(palette_rgb)),
        "P+transparency": (
            write(tmp / "palette_transparent.png", transparent),
            None,
            as_tensor(seen_through[..., :3] * seen_through[..., 3:]),
        ),
        "PA": (
            write(tmp / "palette_alpha.tiff", palette_alpha),
            None,
            as_tensor(palette_alpha_rgba[..., :3] * palette_alpha_rgba[..., 3:]),
        ),
        "RGB": (write(tmp / "rgb.png", Image.fromarray(RGB8)), None, as_tensor(rgb)),
        "RGBA": (
            write(tmp / "rgba.png", Image.fromarray(np.concatenate((RGB8, ALPHA8[..., None]), -1))),
            None,
            as_tensor(over_black),
        ),
        "CMYK": (write(tmp / "cmyk.tiff", cmyk), None, as_tensor(np.asarray(cmyk.convert("RGB")) / 255)),
        "YCbCr": (write(tmp / "ycbcr.tiff", ycbcr), None, as_tensor(np.asarray(ycbcr.convert("RGB")) / 255)),
        "I;16": (
            write(tmp / "gray16.png", Image.fromarray(GRAY16)),
            gray_to(GRAY16 / 65535, 1),
            gray_to(GRAY16 / 65535, 3),
        ),
        "I;16B": (
            write(tmp / "gray16b.tiff", Image.frombytes("I;16B", (6, 5), GRAY16.astype(">u2").tobytes())),
            gray_to(GRAY16 / 65535, 1),
            gray_to(GRAY16 / 65535, 3),
        ),
        "I": (
            write(tmp / "int32.tiff", Image.fromarray(ints)),
            gray_to(ints / 65535, 1),
            gray_to(ints / 65535, 3),
        ),
        "F": (write(tmp / "float.tiff", Image.fromarray(floats)), gray_to(floats, 1), gray_to(floats, 3)),
    }


MODES = [
    "1",
    "L",
    "LA",
    "P",
    "P+transparency",
    "PA",
    "RGB",
    "RGBA",
    "CMYK",
    "YCbCr",
    "I;16",
    "I;16B",
    "I",
    "F",
]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_is_read_by_the_rule(mode, tmp_path):
    path, one, three = cases(tmp_path)[mode]
    assert Image.open(path).mode == mode.split("+")[0]  # the file holds the mode it tests
    assert check_image_file(path) == Image.open(path).mode
    torch.testing.assert_close(read_image(path, 3), three, atol=1e-6, rtol=0)
    if one is not None:
        torch.testing.assert_close(read_image(path, 1), one, atol=1e-6, rtol=0)
    else:  # colour for a grayscale network: refused, unless the image is gray
        with pytest.raises(InputError, match=f"image {path} is in colour, and the network takes 1 channel"):
            read_image(path, 1)


def test_an_8_bit_and_a_16_bit_file_of_one_image_read_the_same(tmp_path):
    """16-bit values are scaled by their depth, never clipped at 255 (PIL's convert('L') would)."""
    eight = write(tmp_path / "eight.png", Image.fromarray(GRAY8))
    sixteen = write(tmp_path / "sixteen.png", Image.fromarray(GRAY8.astype(np.uint16) * 257))
    floats = write(tmp_path / "floats.tiff", Image.fromarray(GRAY8.astype(np.float32) / 255))
    torch.testing.assert_close(read_image(sixteen, 1), read_image(eight, 1), atol=0, rtol=0)
    torch.testing.assert_close(read_image(floats, 1), read_image(eight, 1), atol=1e-7, rtol=0)


def test_a_gray_image_stored_as_colour_is_read_for_a_grayscale_network(tmp_path):
    path = write(tmp_path / "gray_as_rgb.png", Image.fromarray(np.repeat(GRAY8[..., None], 3, -1)))
    torch.testing.assert_close(read_image(path, 1), gray_to(GRAY8 / 255, 1))


def test_the_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(GRAY8)
    exif = image.getexif()
    exif[0x0112] = 6  # rotated: the stored rows are the picture's columns
    path = tmp_path / "sideways.jpg"
    image.save(path, exif=exif, quality=100, subsampling=0)
    upright = read_image(path, 1)
    assert upright.shape == (1, 6, 5)  # width and height swapped back
    stored = torch.from_numpy(np.asarray(Image.open(path))).float() / 255
    torch.testing.assert_close(upright[0], stored.rot90(-1), atol=0, rtol=0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: Image.fromarray(np.full((4, 4), 70000, np.int32)).save(p / "x.tiff"),
            "from 70000 to 70000",
        ),
        (
            lambda p: Image.fromarray(np.full((4, 4), 3.0, np.float32)).save(p / "x.tiff"),
            "float images are read",
        ),
        (lambda p: Image.new("LAB", (4, 4)).save(p / "x.tiff"), "has PIL mode LAB, which is not read"),
        (lambda p: (p / "x.tiff").write_text("not an image"), "cannot read image"),
    ],
    ids=["int32 beyond 16 bits", "floats outside 0-1", "LAB", "not an image"],
)
def test_what_cannot_be_mapped_faithfully_is_refused_naming_the_file(make, message, tmp_path):
    make(tmp_path)
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "x.tiff", 3)
    assert str(tmp_path / "x.tiff") in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_decompression_bomb_is_refused_by_its_header(tmp_path):
    side = int(MAX_PIXELS**0.5) + 10
    path = tmp_path / "bomb.png"
    Image.new("1", (side, side)).save(path, optimize=True)  # a few kB on disk, ~90 megapixels decoded
    assert path.stat().st_size < 200_000
    over = rf"image {path} is {side} x {side} = .* pixels, over the limit"
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(InputError, match=over):
        check_image_file(path)  # PIL warns on opening (the CLI quiets it: its error line says more)
    twice = tmp_path / "bomb2.png"
    Image.new("1", (2 * side, 2 * side)).save(twice, optimize=True)  # past PIL's own error threshold
    with pytest.raises(InputError, match=rf"image {twice} is too large to decode safely"):
        read_image(twice, 1)
