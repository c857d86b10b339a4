"""Set14 shipped intact; the loader's conversions and its errors."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from bpdip.data import SET14, SET14_DIR, center_crop, load_image, read_image, resolve_images
from bpdip.records import write_png
from png16 import write_png16


def test_set14_checksums_match_shipped_list():
    sums = dict(line.split()[::-1] for line in (SET14_DIR / "SHA256SUMS").read_text().splitlines())
    assert sorted(sums) == sorted(f"{n}.png" for n in SET14)
    for name, digest in sums.items():
        assert hashlib.sha256((SET14_DIR / name).read_bytes()).hexdigest() == digest, name


def test_loader_rgb_range_and_gray_replication():
    comic = load_image(SET14_DIR / "comic.png")
    assert comic.shape == (361, 250, 3) and comic.dtype == np.float64
    assert 0.0 <= comic.min() and comic.max() <= 1.0
    raw = np.asarray(Image.open(SET14_DIR / "comic.png"), dtype=np.float64) / 255
    np.testing.assert_array_equal(comic, raw)
    bridge = load_image(SET14_DIR / "bridge.png")  # stored single-channel
    assert bridge.shape == (512, 512, 3)
    np.testing.assert_array_equal(bridge[..., 0], bridge[..., 2])


def test_resolve_names_paths_and_folder(tmp_path):
    refs = resolve_images(["face", "comic"])
    assert [r.name for r in refs] == ["face", "comic"]
    assert len(resolve_images()) == 14
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "mine.png")
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "other.bmp")
    assert [r.name for r in resolve_images(folder=tmp_path)] == ["mine", "other"]
    assert resolve_images([str(tmp_path / "mine.png")])[0].name == "mine"
    assert load_image(tmp_path / "mine.png").shape == (40, 50, 3)


def test_missing_image_names_the_known_ones():
    with pytest.raises(FileNotFoundError, match="'nosuch' not found.*known names: baboon"):
        resolve_images(["nosuch"])
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        resolve_images(folder="/does/not/exist")


def test_alpha_and_unreadable_refused(tmp_path):
    Image.fromarray(np.zeros((40, 40, 4), np.uint8)).save(tmp_path / "rgba.png")
    with pytest.raises(ValueError, match="alpha channel"):
        load_image(tmp_path / "rgba.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image(tmp_path / "junk.png")
    with pytest.raises(FileNotFoundError, match="image not found"):
        load_image(tmp_path / "absent.png")


def _levels16(rng, shape):
    """uint16 samples over the whole range, with far more than 256 distinct levels."""
    return rng.integers(0, 65536, shape).astype(np.uint16)


def test_16_bit_rgb_and_gray_png_keep_every_level(tmp_path, rng):
    rgb, gray = _levels16(rng, (21, 17, 3)), _levels16(rng, (19, 23))
    write_png16(tmp_path / "rgb.png", rgb)
    write_png16(tmp_path / "gray.png", gray)
    got = read_image(tmp_path / "rgb.png")
    assert (got.bit_depth, got.channels) == (16, 3) and got.pixels.dtype == np.float64
    assert len(np.unique(got.pixels)) > 1000  # Pillow alone keeps 256 levels of it
    np.testing.assert_array_equal(got.pixels * 65535, rgb)  # exact: uint16 / 65535
    g = read_image(tmp_path / "gray.png")
    assert (g.bit_depth, g.channels) == (16, 1)
    np.testing.assert_array_equal(g.pixels * 65535, np.repeat(gray[..., None], 3, axis=2))
    np.testing.assert_array_equal(load_image(tmp_path / "rgb.png"), got.pixels)


def test_restored_images_are_written_at_16_bits(tmp_path, rng):
    """records.write_png(bits=16), read back by Pillow's own decoder (its high bytes) and by
    read_image (every level): the file holds round(65535 x), so nothing of x's 8-bit rounding."""
    x = rng.random((13, 18, 3))
    x[0, 0] = (-0.5, 1.5, 0.5)  # clipped to [0, 1] first, as write_png always did
    write_png(tmp_path / "x.png", x, bits=16)
    q = np.round(np.clip(x, 0, 1) * 65535)
    got = read_image(tmp_path / "x.png")
    assert (got.bit_depth, got.channels) == (16, 3)
    np.testing.assert_array_equal(got.pixels * 65535, q)
    with Image.open(tmp_path / "x.png") as im:
        assert im.size == (18, 13)
        np.testing.assert_array_equal(np.asarray(im), (q // 256).astype(np.uint8))
    write_png(tmp_path / "x8.png", x)  # the 8-bit previews are unchanged
    assert read_image(tmp_path / "x8.png").bit_depth == 8


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_16_bit_rgb_tiff_keeps_every_level(tmp_path, rng, compression):
    import tifffile

    rgb = _levels16(rng, (13, 11, 3))
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", compression=compression)
    got = read_image(tmp_path / "rgb.tif")
    assert got.bit_depth == 16
    np.testing.assert_array_equal(got.pixels * 65535, rgb)


def test_8_bit_images_read_as_before_and_say_so():
    for name in ("comic", "bridge"):  # RGB and single-channel
        got = read_image(SET14_DIR / f"{name}.png")
        raw = np.asarray(Image.open(SET14_DIR / f"{name}.png").convert("RGB"), dtype=np.float64) / 255
        assert got.bit_depth == 8 and got.channels == (1 if name == "bridge" else 3)
        np.testing.assert_array_equal(got.pixels, raw)


def test_a_depth_no_reader_keeps_is_one_line(tmp_path):
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match="cannot be read at its full bit depth") as info:
        read_image(tmp_path / "float.tif")
    assert "\n" not in str(info.value) and "16-bit PNG or TIFF" in str(info.value)


def test_center_crop():
    img = np.arange(7 * 9 * 3, dtype=float).reshape(7, 9, 3)
    crop = center_crop(img, (3, 4))
    np.testing.assert_array_equal(crop, img[2:5, 2:6])
    with pytest.raises(ValueError, match="larger than the image"):
        center_crop(img, 8)
