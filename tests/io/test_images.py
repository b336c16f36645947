"""Image I/O: loading any common image into float32 RGB, refusing bad files, atomic saving.

Every image here is made by the test itself with Pillow or by hand.
"""

import io
import os
import resource
import stat
import struct
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pngs import bilevel_png

from nst_tf.errors import ImageError, OutputError
from nst_tf.io import images

RNG = np.random.default_rng(0)


def random_rgb(height: int, width: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def smooth_rgb(height: int, width: int) -> np.ndarray:
    """A gradient: JPEG keeps it within a few levels, unlike noise."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 255 // (height + width - 2)], -1
    ).astype(np.uint8)


def save(img: Image.Image, path, **options) -> str:
    img.save(path, **options)
    return str(path)


# --- loading ------------------------------------------------------------------------------


def test_rgb_png_round_trips_exactly(tmp_path):
    source = random_rgb(13, 17)
    loaded = images.load_image(save(Image.fromarray(source), tmp_path / "a.png"))
    assert loaded.dtype == np.float32 and loaded.shape == (13, 17, 3)
    np.testing.assert_array_equal(loaded, source.astype(np.float32))


def test_jpeg_loads_close_to_its_source(tmp_path):
    source = smooth_rgb(48, 64)
    loaded = images.load_image(save(Image.fromarray(source), tmp_path / "a.jpg", quality=95))
    assert loaded.dtype == np.float32 and loaded.shape == (48, 64, 3)
    error = np.abs(loaded - source)
    assert error.mean() < 2 and error.max() < 24


def test_grayscale_gives_equal_channels(tmp_path):
    gray = RNG.integers(0, 256, size=(9, 11), dtype=np.uint8)
    loaded = images.load_image(save(Image.fromarray(gray, "L"), tmp_path / "g.png"))
    assert loaded.shape == (9, 11, 3)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], gray)


def test_16_bit_png_is_scaled_to_0_255(tmp_path):
    values = np.array([[0, 65535, 32896], [257, 1000, 65279]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I"), "precondition: Pillow reads a 16-bit image"
    loaded = images.load_image(path)
    # v / 257 rounded: 65535 -> 255, 32896 -> 128, 257 -> 1, 1000 -> 3.89 -> 4, 65279 -> 254.
    expected = np.array([[0, 255, 128], [1, 4, 254]], np.float32)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], expected)


def test_palette_image_gives_its_palette_colours(tmp_path):
    colours = [(255, 0, 0), (0, 128, 255), (12, 34, 56)]
    img = Image.new("P", (3, 2))
    img.putpalette([c for colour in colours for c in colour])
    img.putdata([0, 1, 2, 2, 1, 0])
    loaded = images.load_image(save(img, tmp_path / "p.png"))
    expected = np.array(
        [[colours[0], colours[1], colours[2]], [colours[2], colours[1], colours[0]]]
    )
    np.testing.assert_array_equal(loaded, expected.astype(np.float32))


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.array(
        [[[10, 20, 30, 0], [10, 20, 30, 255], [0, 0, 0, 128]]],
        dtype=np.uint8,
    )
    loaded = images.load_image(save(Image.fromarray(rgba, "RGBA"), tmp_path / "t.png"))
    assert loaded.shape == (1, 3, 3)
    np.testing.assert_array_equal(
        loaded[0, 0], [255, 255, 255], err_msg="a fully transparent pixel becomes white"
    )
    np.testing.assert_array_equal(
        loaded[0, 1], [10, 20, 30], err_msg="an opaque pixel keeps its colour"
    )
    np.testing.assert_allclose(
        loaded[0, 2], [127, 127, 127], atol=1, err_msg="half-transparent black over white is grey"
    )


def test_grayscale_with_alpha_is_composited_over_white(tmp_path):
    la = np.array([[[50, 0], [50, 255]]], dtype=np.uint8)
    loaded = images.load_image(save(Image.fromarray(la, "LA"), tmp_path / "la.png"))
    np.testing.assert_array_equal(loaded[0], [[255, 255, 255], [50, 50, 50]])


def test_palette_transparency_is_composited_over_white(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 200, 100, 50])
    img.putdata([0, 1])
    loaded = images.load_image(save(img, tmp_path / "pt.png", transparency=0))
    np.testing.assert_array_equal(loaded[0], [[255, 255, 255], [200, 100, 50]])


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    cmyk = np.zeros((32, 32, 4), np.uint8)
    cmyk[:16, :16, 0] = 255  # pure cyan ink in the top-left quarter
    cmyk[:, 16:, 3] = 255  # black ink on the right half
    path = save(Image.fromarray(cmyk, "CMYK"), tmp_path / "cmyk.jpg", quality=95)
    with Image.open(path) as img:
        assert img.mode == "CMYK", "precondition: the file really is CMYK"
        pillow_rgb = np.asarray(img.convert("RGB"), np.float32)
    loaded = images.load_image(path)
    assert loaded.shape == (32, 32, 3)
    np.testing.assert_allclose(loaded, pillow_rgb, atol=2)
    np.testing.assert_allclose(loaded[4, 4], [0, 255, 255], atol=8)  # cyan
    np.testing.assert_allclose(loaded[24, 4], [255, 255, 255], atol=8)  # no ink: white
    np.testing.assert_allclose(loaded[24, 24], [0, 0, 0], atol=8)  # black


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_jpeg_comes_back_upright(tmp_path, orientation):
    """Stored 64 wide and 32 high with a red top-left block; the camera was turned."""
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[...] = (0, 0, 255)
    stored[:16, :16] = (255, 0, 0)
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = orientation
    path = save(img, tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    loaded = images.load_image(path)
    assert loaded.shape == (64, 32, 3)
    # Orientation 6: turn 90 degrees clockwise to view, so the stored top-left corner is
    # shown top-right. Orientation 8: turn counter-clockwise, so it is shown bottom-left.
    red_corner = (
        (slice(0, 16), slice(16, 32)) if orientation == 6 else (slice(48, 64), slice(0, 16))
    )
    np.testing.assert_allclose(loaded[red_corner].mean(axis=(0, 1)), [255, 0, 0], atol=12)
    assert loaded[..., 0].mean() == pytest.approx(255 * 256 / 2048, abs=12)


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [
        Image.new("RGB", (8, 6), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    ]
    path = save(frames[0], tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with Image.open(path) as img:
        assert img.n_frames == 3, "precondition: the GIF is animated"
    loaded = images.load_image(path)
    assert loaded.shape == (6, 8, 3)
    np.testing.assert_array_equal(loaded, np.broadcast_to([255, 0, 0], (6, 8, 3)))


def test_non_ascii_file_name(tmp_path):
    source = random_rgb(5, 7)
    path = save(Image.fromarray(source), tmp_path / "Tübingen_夜の海_ñ.png")
    np.testing.assert_array_equal(images.load_image(path), source)


# --- bad inputs --------------------------------------------------------------------------------


def test_missing_file_raises_image_error(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        images.load_image(str(tmp_path / "missing.png"))


def test_directory_raises_image_error(tmp_path):
    with pytest.raises(ImageError):
        images.load_image(str(tmp_path))


def test_empty_file_raises_image_error(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError):
        images.load_image(str(path))


def test_truncated_jpeg_raises_image_error(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(random_rgb(64, 64)).save(buffer, format="JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError):
        images.load_image(str(path))


def test_text_file_named_png_raises_image_error(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are notes, not pixels\n")
    with pytest.raises(ImageError):
        images.load_image(str(path))


def test_corrupt_tiff_with_fractional_strip_offset_raises_image_error(tmp_path):
    """Pillow raises TypeError when a TIFF gives its strip offset as a fraction."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buffer, format="TIFF")
    data = bytearray(buffer.getvalue())
    assert data[:4] == b"II*\x00"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack_from("<H", data, entry)[0] == 273:  # StripOffsets
            struct.pack_into("<H", data, entry + 2, 10)  # type SRATIONAL
    path = tmp_path / "odd.tiff"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about the odd tag first
        with pytest.raises(ImageError):
            images.load_image(str(path))


@pytest.mark.parametrize("side", [10_000, 20_000], ids=["over_limit", "over_twice_limit"])
def test_decompression_bomb_raises_image_error_without_decoding(tmp_path, side):
    assert side * side > Image.MAX_IMAGE_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(bilevel_png(side, side))
    assert path.stat().st_size < 100_000
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", None)
        with Image.open(path) as img:  # reads the header only
            assert img.size == (side, side), "precondition: a valid PNG header"
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ImageError, match="pixels"):
        images.load_image(str(path))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    # Decoding would take 100+ MB even as 1 bit per pixel, and several GB as float RGB.
    assert grown_mib < 50, f"loading the bomb raised peak memory by {grown_mib:.0f} MiB"


# --- resizing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "height, width, size, expected",
    [
        (480, 640, 320, (240, 320)),
        (1000, 750, 512, (512, 384)),
        (333, 500, 256, (170, 256)),  # 333 * 0.512 = 170.496 -> 170
        (7, 3, 3, (3, 1)),  # 3 * 3 / 7 = 1.29 -> 1
        (3, 1000, 100, (1, 100)),  # 0.3 rounds to 0, but a side is at least one pixel
        (100, 100, 50, (50, 50)),
        (20, 40, 80, (40, 80)),  # upscaling
    ],
)
def test_scaled_shape_keeps_aspect_ratio(height, width, size, expected):
    assert images.scaled_shape(height, width, size) == expected


@pytest.mark.parametrize("size, expected", [(10, (5, 10, 3)), (80, (40, 80, 3)), (30, (15, 30, 3))])
def test_load_image_with_size_sets_the_longest_side(tmp_path, size, expected):
    path = save(Image.fromarray(random_rgb(20, 40)), tmp_path / "wide.png")
    assert images.load_image(path, size=size).shape == expected


def test_load_image_with_size_of_portrait(tmp_path):
    path = save(Image.fromarray(random_rgb(90, 30)), tmp_path / "tall.png")
    assert images.load_image(path, size=45).shape == (45, 15, 3)


def test_load_image_at_its_own_size_is_unchanged(tmp_path):
    source = random_rgb(20, 40)
    path = save(Image.fromarray(source), tmp_path / "same.png")
    np.testing.assert_array_equal(images.load_image(path, size=40), source)


def test_resizing_a_flat_image_keeps_its_colour(tmp_path):
    path = save(Image.new("RGB", (60, 30), (200, 40, 90)), tmp_path / "flat.png")
    loaded = images.load_image(path, size=17)
    np.testing.assert_allclose(loaded, np.broadcast_to([200, 40, 90], loaded.shape), atol=1)


# --- saving ------------------------------------------------------------------------------------


def leftovers(directory) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".part")]


@pytest.mark.parametrize("name", ["out.png", "OUT.PNG"])
def test_save_png_reloads_exactly(tmp_path, name):
    source = random_rgb(11, 9)
    path = tmp_path / name
    images.save_image(source.astype(np.float32), str(path))
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(path) as img:
        np.testing.assert_array_equal(np.asarray(img), source)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["out.jpg", "out.jpeg"])
def test_save_jpeg_by_extension(tmp_path, name):
    source = smooth_rgb(32, 48)
    path = tmp_path / name
    images.save_image(source, str(path))
    assert path.read_bytes().startswith(b"\xff\xd8\xff")
    assert np.abs(images.load_image(str(path)) - source).mean() < 2
    assert leftovers(tmp_path) == []


def test_save_rounds_and_clips_float_pixels(tmp_path):
    image = np.array([[[-20.0, 0.4, 0.6], [254.5, 255.49, 300.0]]], np.float32)
    path = tmp_path / "clip.png"
    images.save_image(image, str(path))
    with Image.open(path) as img:
        # np.round: 0.4 -> 0, 0.6 -> 1, 254.5 -> 254 (half to even), 255.49 -> 255.
        np.testing.assert_array_equal(np.asarray(img), [[[0, 0, 1], [254, 255, 255]]])


@pytest.mark.parametrize("name", ["out.xyz", "out", "out.txt"])
def test_save_with_unknown_extension_raises_and_writes_nothing(tmp_path, name):
    with pytest.raises(OutputError):
        images.save_image(random_rgb(4, 4), str(tmp_path / name))
    assert os.listdir(tmp_path) == []


def test_save_into_missing_directory_raises_output_error(tmp_path):
    with pytest.raises(OutputError):
        images.save_image(random_rgb(4, 4), str(tmp_path / "nope" / "out.png"))


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "out.png"
    path.write_text("old contents")
    source = random_rgb(6, 5)
    images.save_image(source, str(path))
    with Image.open(path) as img:
        np.testing.assert_array_equal(np.asarray(img), source)
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_save_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch, error):
    path = tmp_path / "out.png"
    path.write_bytes(b"the previous result")

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half an image")
        raise error

    monkeypatch.setattr(Image.Image, "save", failing_save)
    expected = OutputError if isinstance(error, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        images.save_image(random_rgb(4, 4), str(path))
    assert path.read_bytes() == b"the previous result"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
def test_saved_file_has_the_usual_permissions(tmp_path, umask):
    """Like any new file: 0666 less the umask, not the 0600 of a private temporary file."""
    old = os.umask(umask)
    try:
        images.save_image(random_rgb(4, 4), str(tmp_path / "out.png"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o666 & ~umask


def test_replaced_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "out.png"
    path.write_text("old")
    path.chmod(0o640)
    images.save_image(random_rgb(4, 4), str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


# --- checking the output path before a run -------------------------------------------------


def test_check_output_path_accepts_a_writable_path(tmp_path):
    images.check_output_path(str(tmp_path / "out.png"))
    images.check_output_path(str(tmp_path / "out.jpg"))
    assert os.listdir(tmp_path) == []


def test_check_output_path_refuses_a_missing_directory(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        images.check_output_path(str(tmp_path / "missing" / "out.png"))


def test_check_output_path_refuses_a_directory(tmp_path):
    (tmp_path / "result.png").mkdir()
    with pytest.raises(OutputError, match="directory"):
        images.check_output_path(str(tmp_path / "result.png"))


@pytest.mark.parametrize("name", ["out.xyz", "out", "out."])
def test_check_output_path_refuses_an_unknown_extension(tmp_path, name):
    with pytest.raises(OutputError):
        images.check_output_path(str(tmp_path / name))


def test_check_output_path_refuses_a_directory_the_os_denies(tmp_path, monkeypatch):
    """The check follows os.access, so it also holds where chmod alone cannot show it."""
    denied = str(tmp_path)

    def access(path, mode, *args, **kwargs):
        return not (os.path.abspath(path) == denied and mode & os.W_OK)

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(OutputError, match="not writable"):
        images.check_output_path(os.path.join(denied, "out.png"))


def test_check_output_path_refuses_a_read_only_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.geteuid() == 0:
            pytest.skip("running as root: chmod 0o555 does not stop root from writing")
        with pytest.raises(OutputError, match="not writable"):
            images.check_output_path(str(locked / "out.png"))
    finally:
        locked.chmod(0o755)


# --- property: any bytes either load as an image or raise ImageError -----------------------


def _encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


_SMALL = Image.fromarray(random_rgb(6, 5))
_EXIF = _SMALL.getexif()
_EXIF[0x0112] = 6
VALID_FILES = [
    _encoded(_SMALL, "PNG"),
    _encoded(_SMALL, "JPEG", exif=_EXIF.tobytes()),
    _encoded(_SMALL.convert("P"), "GIF", save_all=True, append_images=[_SMALL.convert("P")]),
    _encoded(_SMALL, "TIFF"),
    _encoded(_SMALL.convert("RGBA"), "PNG"),
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fuzz") / "x.png")


def assert_image_or_image_error(path: str) -> None:
    try:
        loaded = images.load_image(path)
    except ImageError:
        return
    assert loaded.dtype == np.float32
    assert loaded.ndim == 3 and loaded.shape[2] == 3
    assert loaded.size > 0 and loaded.min() >= 0 and loaded.max() <= 255


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096))
def test_random_bytes_load_or_raise_image_error(scratch, data):
    with open(scratch, "wb") as f:
        f.write(data)
    assert_image_or_image_error(scratch)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(VALID_FILES),
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6),
    cut=st.none() | st.integers(0, 1 << 16),
)
def test_damaged_images_load_or_raise_image_error(scratch, base, edits, cut):
    data = bytearray(base)
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about some damaged metadata
        with open(scratch, "wb") as f:
            f.write(data)
        assert_image_or_image_error(scratch)


def test_valid_fuzz_seeds_load(tmp_path):
    """The damaged-image property starts from files that load when intact."""
    for index, data in enumerate(VALID_FILES):
        path = tmp_path / f"seed{index}.img"
        path.write_bytes(data)
        assert images.load_image(str(path)).shape[:2] in [(6, 5), (5, 6)]


# --- print info: what is carried from the content into the output (issue 23, rule 2) -----


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("dpi", [4e9, 1e6, 0.01])
def test_an_absurd_dpi_is_dropped_with_a_warning(tmp_path, caplog, dpi):
    path = save(Image.fromarray(random_rgb(8, 8)), tmp_path / "scan.tif", dpi=(dpi, dpi))
    with caplog.at_level("WARNING"):
        info = images.read_print_info(path)
    assert info.dpi is None
    assert "not a print resolution" in caplog.text and "scan.tif" in caplog.text


@pytest.mark.parametrize("dpi", [1.0, 300.0, 100_000.0])
def test_a_plausible_dpi_is_kept(tmp_path, dpi):
    path = save(Image.fromarray(random_rgb(8, 8)), tmp_path / "scan.tif", dpi=(dpi, dpi))
    assert images.read_print_info(path).dpi == pytest.approx((dpi, dpi))


@pytest.mark.parametrize(
    "name, bit_depth", [("out.png", 8), ("out.png", 16), ("out.tif", 16), ("out.jpg", 8)]
)
def test_the_absurd_dpi_that_broke_saving_is_probed_and_never_reaches_the_writer(
    tmp_path, name, bit_depth
):
    # The red team's TIFF: every step ran, then Pillow's pHYs overflowed (8-bit PNG) or
    # pypng's struct packing failed (16-bit PNG).
    content = save(Image.fromarray(random_rgb(8, 8)), tmp_path / "scan.tif", dpi=(4e9, 4e9))
    out = str(tmp_path / name)
    info = images.probe_print_info(images.read_print_info(content), out, bit_depth)
    assert info.dpi is None
    images.save_image(random_rgb(8, 8).astype(np.float32), out, bit_depth, info)
    assert images.load_image(out).shape == (8, 8, 3)


@pytest.mark.parametrize("name, bit_depth", [("out.png", 8), ("out.png", 16)])
def test_the_probe_drops_what_the_writer_cannot_carry(tmp_path, caplog, name, bit_depth):
    # Built by hand, past read_print_info's checks: the probe is the last line of defence.
    info = images.PrintInfo(_srgb_profile(), (4e9, 4e9))
    out = str(tmp_path / name)
    with caplog.at_level("WARNING"):
        probed = images.probe_print_info(info, out, bit_depth)
    assert probed == images.PrintInfo(info.icc_profile, None)
    assert "cannot carry the content's DPI" in caplog.text
    assert not os.listdir(tmp_path)  # the probe writes nothing to disk


def test_save_image_turns_a_writer_overflow_into_an_output_error(tmp_path):
    info = images.PrintInfo(None, (4e9, 4e9))
    for name, bit_depth in [("out.png", 8), ("out.png", 16)]:
        with pytest.raises(OutputError, match="cannot write"):
            images.save_image(np.zeros((4, 4, 3)), str(tmp_path / name), bit_depth, info)
    assert not os.listdir(tmp_path)


def test_valid_print_info_passes_the_probe_unchanged(tmp_path):
    info = images.PrintInfo(_srgb_profile(), (300.0, 300.0))
    for name, bit_depth in [("a.png", 8), ("a.png", 16), ("a.tif", 16), ("a.jpg", 8)]:
        assert images.probe_print_info(info, str(tmp_path / name), bit_depth) == info


@pytest.mark.parametrize("size", [2_850_000, 3000])
def test_a_garbage_icc_profile_is_dropped_with_a_warning(tmp_path, caplog, size):
    # The red team's JPEG carried 2.85 MB of random bytes as its profile; copied as it
    # was, nst_tf then refused its own PNG output (Pillow's MAX_TEXT_CHUNK).
    garbage = np.random.default_rng(size).bytes(size)
    path = save(Image.fromarray(smooth_rgb(16, 16)), tmp_path / "photo.jpg", icc_profile=garbage)
    with Image.open(path) as img:
        assert img.info["icc_profile"] == garbage  # the file really carries it
    with caplog.at_level("WARNING"):
        info = images.read_print_info(path)
    assert info.icc_profile is None
    assert "ICC profile" in caplog.text and "photo.jpg" in caplog.text
    for name, bit_depth in [("out.png", 8), ("out.png", 16), ("out.tif", 16)]:
        out = str(tmp_path / name)
        images.save_image(smooth_rgb(16, 16).astype(np.float32), out, bit_depth, info)
        assert images.load_image(out).shape == (16, 16, 3)


def test_a_valid_profile_larger_than_the_png_reader_takes_is_dropped(tmp_path, caplog):
    # A parseable profile padded past MAX_ICC_BYTES: nst_tf could not read a PNG with it.
    profile = _srgb_profile()
    padded = profile + bytes(images.MAX_ICC_BYTES)
    padded = len(padded).to_bytes(4, "big") + padded[4:]
    path = save(Image.fromarray(smooth_rgb(16, 16)), tmp_path / "photo.jpg", icc_profile=padded)
    with caplog.at_level("WARNING"):
        assert images.read_print_info(path).icc_profile is None
    assert f"more than {images.MAX_ICC_BYTES}" in caplog.text


def test_a_valid_profile_is_kept(tmp_path):
    profile = _srgb_profile()
    path = save(Image.fromarray(smooth_rgb(16, 16)), tmp_path / "photo.jpg", icc_profile=profile)
    assert images.read_print_info(path).icc_profile == profile
