"""Image I/O: defensive loading into float32 RGB, resizing, and atomic saving."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import secrets
import stat
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from absl import logging
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError

from nst_tf.errors import ImageError, OutputError
from nst_tf.io.paths import check_writable_file, open_regular, shown

# Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; we refuse at the
# warning so a crafted file cannot make us allocate gigabytes. 89.5 Mpx is ~9460^2.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS

# The only formats we decode: raster formats Pillow reads itself. Everything else Pillow
# knows stays off, among them EPS/PS (handed to Ghostscript, a PostScript interpreter)
# and the rarely used plugins whose parsers have had the most bugs. JPEG includes MPO,
# the multi-picture JPEG many phones write.
INPUT_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")


def input_extensions() -> set[str]:
    """File extensions of the formats we read (for picking images out of a folder)."""
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in INPUT_FORMATS}


SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"


def sample_path(kind: str) -> str:
    """Returns the path of a built-in sample image ("content" or "style")."""
    return str(SAMPLES_DIR / f"{kind}.png")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Converts any Pillow mode to 8-bit RGB, compositing transparency over white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow's convert("L") clips 16-bit values instead of scaling them.
        scale = 257.0 if img.mode.startswith("I;16") else max(1.0, np.asarray(img).max() / 255)
        gray = np.clip(np.asarray(img, dtype=np.float64) / scale, 0, 255).round()
        img = Image.fromarray(gray.astype(np.uint8), "L")
    if img.mode == "F":
        gray = np.clip(np.asarray(img, dtype=np.float64), 0, 255).round()
        img = Image.fromarray(gray.astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def _decode(file, limit: int | None) -> Image.Image:
    """Decodes the first frame as 8-bit RGB, at most `limit` px on its longest side.

    A large image is made small as early as its format allows: JPEG decodes at 1/2, 1/4
    or 1/8 scale (draft), and every image is resized while still 8-bit, before the
    float32 copy, so a 9000x9000 photo for a 512 px run never costs gigabytes.
    """
    with Image.open(file, formats=INPUT_FORMATS) as img:
        img.seek(0)
        if limit is not None and img.format in ("JPEG", "MPO"):
            img.draft("RGB", (limit, limit))  # never below the requested size
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
        if limit is not None and max(img.size) >= 2 * limit:
            img = _reduced(img, max(img.size) // limit)
        img = _to_rgb(img)
    if limit is not None and max(img.size) > limit:
        img = resize_longest(img, limit)
    return img


def _reduced(img: Image.Image, factor: int) -> Image.Image:
    """Box-averages `factor` x `factor` blocks in the image's own mode, before any copy in
    RGB (3x the pixels of a grayscale image) is made; the longest side stays >= the
    limit, and a Lanczos resize follows. Palette and 16-bit images are left whole: their
    values are indices, or not what Pillow's reduce handles."""
    if img.mode == "1":
        img = img.convert("L")
    if img.mode in ("L", "LA", "RGB", "RGBA", "CMYK", "I", "F"):
        img = img.reduce(factor)
    return img


def load_image(path: str, size: int | None = None, limit: int | None = None) -> np.ndarray:
    """Reads an image file into a float32 RGB array in 0..255.

    EXIF orientation is applied, grayscale/palette/16-bit/CMYK images are converted,
    transparency is composited over white, and animated images give their first frame.
    Only the formats in INPUT_FORMATS are read.

    Args:
        path: The image file.
        size: If given, the image is resized (Lanczos) so its longest side is `size`.
        limit: If given, a larger image is downscaled on load so its longest side is at
            most `limit` (cheaply: see _decode); a smaller one is left as it is.

    Returns:
        An array of shape (height, width, 3), dtype float32, values in [0, 255].

    Raises:
        ImageError: the file is missing, not a regular file, unreadable, not an image,
            or too large.
    """
    label = shown(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_regular(path, ImageError) as file:
                img = _decode(file, limit)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(
            f"{label} has more than {MAX_PIXELS} pixels; downscale it before using it"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{label} is not an image nst_tf reads; give a {', '.join(INPUT_FORMATS)} file"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError, struct.error) as err:
        # Pillow raises these for truncated or corrupt data (TypeError for instance when a
        # corrupt TIFF gives a strip offset as a fraction).
        raise ImageError(f"{label} is corrupt or truncated ({err}); re-export the image") from None
    if size is not None:
        img = resize_longest(img, size)
    return np.asarray(img, dtype=np.float32)


def scaled_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """The (height, width) whose longest side is `size`, keeping the aspect ratio."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_longest(img: Image.Image, size: int) -> Image.Image:
    """Resizes a Pillow image so its longest side is `size` pixels (Lanczos)."""
    height, width = scaled_shape(img.height, img.width, size)
    if (height, width) == (img.height, img.width):
        return img
    return img.resize((width, height), Image.Resampling.LANCZOS)


def _format_for(path: str) -> str:
    """The format Pillow writes for the extension of `path`, once shown to work.

    Pillow lists formats it cannot write (stubs such as HDF5 or WMF, or formats that
    take no RGB image such as XBM or BLP), so a 1x1 image is written to memory first:
    a run must not find out after its last step that its result cannot be saved.
    """
    ext = os.path.splitext(path)[1].lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise OutputError(
            f"{shown(path)}: cannot tell the image format from the extension "
            f"{ext or '(none)'!r}; use .png or .jpg"
        )
    try:
        Image.new("RGB", (1, 1)).save(io.BytesIO(), format=fmt)
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        raise OutputError(
            f"{shown(path)}: Pillow cannot write an RGB image as {fmt} ({ext}); use .png or .jpg"
        ) from None
    return fmt


def check_output_path(path: str, flag: str = "output", image: bool = True) -> None:
    """Fails early if `path` cannot be written, so a long run is not wasted.

    Args:
        path: The file to be written.
        flag: The flag that named it, for the message.
        image: Also require an extension that names an image format Pillow can write.

    Raises:
        OutputError: the directory is missing or unwritable, the path is a directory or
            not a regular file, or the extension names no writable image format.
    """
    if image:
        _format_for(path)
    check_writable_file(path, flag)


# How atomic_write names its temporary files: a SIGKILL can leave one behind. A writer
# may tag its names (nst-tf-batch: "batch-") so that it removes only its own leftovers.
TEMP_GLOB = ".nst_tf-*.part"


def _create_temp(directory: str, tag: str = "") -> tuple[int, str]:
    """Creates an empty hidden file next to the destination, with the usual permissions.

    Unlike tempfile.mkstemp (mode 0600), the mode is 0666 less the umask, as for any file
    the user creates; the name is random and O_EXCL makes the creation safe.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, TEMP_GLOB.replace("*", tag + secrets.token_hex(8)))
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file in {directory}")


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb", tag: str = ""):
    """Yields a file object whose contents replace `path` only once fully written.

    The data goes to a temporary file in the same directory (named as TEMP_GLOB with
    `tag` before its random part), is fsynced, then renamed over `path`, so readers see
    the old file or the whole new one, never a part. A file that is replaced keeps its
    permissions.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = _create_temp(directory, tag)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Rounds a float image in 0..255 to uint8."""
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class PrintInfo:
    """What a print needs from the content image besides its pixels.

    Attributes:
        icc_profile: The embedded ICC colour profile (bytes), or None. The pixels are
            never converted, so the output is in the content's colour space and carries
            its profile.
        dpi: (horizontal, vertical) dots per inch, or None.
    """

    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None


# The DPI carried into an output: anything outside this range is a corrupt tag, not a
# print size (scanners top out near 10^4), and beyond ~1.1e8 it overflows PNG's pHYs.
MIN_DPI, MAX_DPI = 1.0, 100_000.0
# The largest ICC profile carried into an output: Pillow refuses to read back a PNG whose
# decompressed iCCP chunk is larger, and real profiles are a few hundred KB at most.
MAX_ICC_BYTES = PngImagePlugin.MAX_TEXT_CHUNK


def _checked_dpi(dpi, label: str) -> tuple[float, float] | None:
    """The DPI pair if it is a plausible print resolution; None (with a warning) if not."""
    try:
        pair = (float(dpi[0]), float(dpi[1]))
    except (TypeError, ValueError, IndexError):
        pair = None
    if pair is not None and all(MIN_DPI <= d <= MAX_DPI for d in pair):
        return pair
    logging.warning(
        "%s: its DPI %s is not a print resolution (%g..%g); the output gets no DPI",
        label,
        pair or dpi,
        MIN_DPI,
        MAX_DPI,
    )
    return None


def _checked_icc(icc: bytes, label: str) -> bytes | None:
    """The ICC profile if LittleCMS parses it and it is not oversized; None (with a
    warning) if not."""
    if len(icc) > MAX_ICC_BYTES:
        problem = f"is {len(icc)} bytes, more than {MAX_ICC_BYTES}"
    else:
        try:
            ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return icc
        except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
            problem = "is not a valid profile"
    logging.warning("%s: its ICC profile %s; the output gets no profile", label, problem)
    return None


def read_print_info(path: str) -> PrintInfo:
    """The ICC profile and DPI of an image file (empty where it has none or is unreadable).

    Only what is valid is kept: a DPI outside MIN_DPI..MAX_DPI, or an ICC profile that
    does not parse or is larger than MAX_ICC_BYTES, is dropped with a warning, so that
    a corrupt tag in the content never makes the output unwritable or unreadable.

    Args:
        path: An image file that load_image has already read.
    """
    try:
        with Image.open(path, formats=INPUT_FORMATS) as img:
            icc = img.info.get("icc_profile") or None
            dpi = img.info.get("dpi")
    except (OSError, ValueError, SyntaxError):
        return PrintInfo()
    label = shown(path)
    if icc is not None:
        icc = _checked_icc(bytes(icc), label)
    if dpi is not None and dpi != (0, 0):  # (0, 0): a resolution tag left unset
        dpi = _checked_dpi(dpi, label)
    return PrintInfo(icc, dpi)


def probe_print_info(info: PrintInfo, path: str, bit_depth: int = 8) -> PrintInfo:
    """Writes and reads back a tiny image as save_image would write `path`, up front.

    Whatever the output's writer (Pillow, pypng, tifffile) cannot write with the
    image, or nst_tf cannot read back, is dropped with a warning, before a run's
    steps are spent.

    Args:
        info: The print info read from the content (read_print_info).
        path: The output path (its extension picks the writer).
        bit_depth: 8 or 16, as for save_image.

    Returns:
        The print info that the output's writer and reader both accept.

    Raises:
        OutputError: the writer fails even with no print info.
    """
    fmt = _format_for(path)
    tiny = np.zeros((2, 2, 3), np.float32)
    candidates = [info, dataclasses.replace(info, dpi=None), PrintInfo(info.icc_profile)]
    candidates += [dataclasses.replace(info, icc_profile=None), PrintInfo()]
    problem = None
    for candidate in dict.fromkeys(candidates):  # in order, without repeats
        buffer = io.BytesIO()
        try:
            _encode(buffer, tiny, fmt, bit_depth, candidate)
            if fmt in INPUT_FORMATS:  # nst_tf must read its own output back
                buffer.seek(0)
                _decode(buffer, None)
        except _WRITE_ERRORS + (SyntaxError, EOFError, IndexError) as err:
            problem = problem or err
            continue
        if candidate != info:
            dropped = [
                name
                for name, value in (("ICC profile", "icc_profile"), ("DPI", "dpi"))
                if getattr(info, value) is not None and getattr(candidate, value) is None
            ]
            logging.warning(
                "%s cannot carry the content's %s (%s); writing it without",
                shown(path),
                " and ".join(dropped),
                problem,
            )
        return candidate
    raise OutputError(f"cannot write {shown(path)}: {problem}")


def to_uint16(image: np.ndarray) -> np.ndarray:
    """Scales a float image in 0..255 to uint16 0..65535, keeping the float's precision."""
    return np.clip(np.round(np.asarray(image, np.float64) * 257.0), 0, 65535).astype(np.uint16)


def save_image(
    image: np.ndarray,
    path: str,
    bit_depth: int = 8,
    info: PrintInfo | None = None,
    tag: str = "",
) -> None:
    """Writes an RGB image atomically; the format follows the extension.

    Args:
        image: Array (height, width, 3) in 0..255 (float or uint8).
        path: Destination; .png, .jpg/.jpeg and other Pillow formats; .png or .tif for
            16 bits.
        bit_depth: 8, or 16 bits per channel (PNG written with pypng, TIFF with tifffile).
        info: An ICC profile and DPI to embed (the content's), or None.
        tag: Marks the temporary file's name (see atomic_write).

    Raises:
        OutputError: the path cannot be written.
    """
    fmt = _format_for(path)
    try:
        with atomic_write(path, tag=tag) as f:
            _encode(f, image, fmt, bit_depth, info or PrintInfo())
    except _WRITE_ERRORS as err:
        raise OutputError(
            f"cannot write {shown(path)}: {getattr(err, 'strerror', None) or err}"
        ) from None


# What the writers raise on values they cannot encode (Pillow's OverflowError for a huge
# pHYs, pypng's struct.error), besides the file system's OSError.
_WRITE_ERRORS = (OSError, ValueError, OverflowError, struct.error)


def _encode(f, image: np.ndarray, fmt: str, bit_depth: int, info: PrintInfo) -> None:
    """Writes `image` to the open file `f` in `fmt` at `bit_depth` with `info`."""
    if bit_depth == 16 and fmt == "PNG":
        _write_png16(f, image, info)
    elif bit_depth == 16:
        _write_tiff16(f, image, info)
    else:
        options = {"quality": 95} if fmt == "JPEG" else {}
        if info.icc_profile:
            options["icc_profile"] = info.icc_profile
        if info.dpi:
            options["dpi"] = info.dpi
        Image.fromarray(to_uint8(np.asarray(image)), "RGB").save(f, format=fmt, **options)


def _write_tiff16(f, image: np.ndarray, info: PrintInfo) -> None:
    """A 16-bit RGB TIFF (deflate-compressed) with the profile and resolution given.

    Pillow cannot write 16-bit RGB; tifffile (Christoph Gohlke's) can, with ICC tags.
    """
    import tifffile  # pylint: disable=import-outside-toplevel

    options = {"iccprofile": info.icc_profile} if info.icc_profile else {}
    if info.dpi:
        options.update(resolution=info.dpi, resolutionunit="INCH")
    # Through a buffer: tifffile wants a named file, and ours is an anonymous descriptor.
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, to_uint16(image), photometric="rgb", compression="zlib", **options)
    f.write(buffer.getbuffer())


def _write_png16(f, image: np.ndarray, info: PrintInfo) -> None:
    """A 16-bit RGB PNG with the profile (iCCP) and resolution (pHYs) given.

    Pillow cannot write 16-bit RGB; pypng can, and its chunk writer carries the profile.
    """
    import png  # pylint: disable=import-outside-toplevel

    pixels = to_uint16(image)
    height, width = pixels.shape[:2]
    options = {}
    if info.dpi:
        # pHYs holds pixels per metre.
        x, y = (round(d / 0.0254) for d in info.dpi)
        options.update(x_pixels_per_unit=x, y_pixels_per_unit=y, unit_is_meter=True)
    writer = png.Writer(width, height, greyscale=False, bitdepth=16, compression=6, **options)
    buffer = io.BytesIO()
    writer.write(buffer, pixels.reshape(height, width * 3))
    chunks = list(png.Reader(bytes=buffer.getvalue()).chunks())
    if info.icc_profile:
        # iCCP: a name, a NUL, compression method 0, the zlib-compressed profile; it must
        # come before the image data.
        iccp = b"ICC profile\0\0" + zlib.compress(info.icc_profile)
        chunks.insert(1, (b"iCCP", iccp))
    png.write_chunks(f, chunks)
