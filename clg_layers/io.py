"""Image reading and writing for the CLI: 8/16-bit, gray/RGB, alpha kept aside, atomic writes.

Reading refuses decompression bombs (images whose pixel count exceeds a limit)
and modes we cannot restore faithfully, with a clear message. Writing goes to
a temporary file in the destination folder that is renamed into place only
once complete, so a failure never leaves a partial output file.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["DEFAULT_MAX_PIXELS", "ImageData", "read_image", "write_image"]

#: Largest image (in pixels) read by default: 16384 × 8192. Larger files are refused as possible
#: decompression bombs; pass ``max_pixels`` to raise the limit.
DEFAULT_MAX_PIXELS = 16384 * 8192

_CONVERT_TO_RGB = {"P": "RGBA", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "1": "L"}
_SUPPORTED = ("L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I")


@dataclass
class ImageData:
    """An image as the model sees it, plus what is needed to write it back the same way.

    Attributes:
        tensor: Colour (or gray) channels, ``(1, C, H, W)`` float32 in ``[0, 1]``.
        alpha: The alpha channel, ``(H, W)`` float32 in ``[0, 1]``, or ``None``.
        bit_depth: 8 or 16.
    """

    tensor: torch.Tensor
    alpha: torch.Tensor | None
    bit_depth: int


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Read a PNG, JPEG, TIFF, BMP or WebP image.

    Args:
        path: The image file.
        max_pixels: Refuse images with more pixels than this.

    Returns:
        An :class:`ImageData`.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a readable image, is too large, or has
            an unsupported mode (e.g. floating-point TIFF).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {str(path)!r}")
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = max_pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ValueError(
                        f"{str(path)!r} is {w}×{h} = {w * h} pixels, over the limit of {max_pixels} "
                        "(a possible decompression bomb); raise the limit if the image is genuine"
                    )
                img.load()
                mode = img.mode
                if mode in _CONVERT_TO_RGB:
                    img = img.convert(_CONVERT_TO_RGB[mode])
                    mode = img.mode
                if mode not in _SUPPORTED:
                    raise ValueError(
                        f"{str(path)!r} has image mode {mode!r}, which is not supported "
                        "(supported: 8-bit gray/RGB with optional alpha, 16-bit gray)"
                    )
                arr = np.asarray(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"{str(path)!r} is refused as a possible decompression bomb: {err}") from None
    except UnidentifiedImageError:
        raise ValueError(f"{str(path)!r} is not an image file Pillow can read") from None
    except (OSError, SyntaxError) as err:  # truncated or corrupt data
        raise ValueError(f"{str(path)!r} is corrupt or truncated: {err}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit

    if mode.startswith("I"):
        if arr.max(initial=0) > 65535 or arr.min(initial=0) < 0:
            raise ValueError(f"{str(path)!r} holds values outside 16 bits, which is not supported")
        data, depth = arr.astype(np.float32) / 65535.0, 16
    else:
        data, depth = arr.astype(np.float32) / 255.0, 8
    if data.ndim == 2:
        data = data[..., None]
    alpha = None
    if mode in ("LA", "RGBA"):
        alpha = torch.from_numpy(np.ascontiguousarray(data[..., -1]))
        data = data[..., :-1]
    tensor = torch.from_numpy(np.ascontiguousarray(data)).permute(2, 0, 1)[None].contiguous()
    return ImageData(tensor=tensor, alpha=alpha, bit_depth=depth)


def write_image(path: str | Path, image: ImageData) -> Path:
    """Write ``image`` (clamped to ``[0, 1]``) at its bit depth, atomically.

    Args:
        path: Destination; the format follows the suffix (``.png``, ``.jpg``, ``.tif``, ...).
        image: What to write; ``tensor`` is ``(1, C, H, W)`` with ``C`` 1 or 3.

    Returns:
        The path written.

    Raises:
        ValueError: For a format that cannot hold the image (JPEG with alpha or
            16 bits), or an unknown suffix. Nothing is left at ``path`` then.
    """
    from PIL import Image

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot tell the image format from the suffix of {str(path)!r}; use .png, .jpg or .tif"
        )
    t = image.tensor
    if t.ndim != 4 or t.shape[0] != 1 or t.shape[1] not in (1, 3):
        raise ValueError(f"write_image: expected a (1, 1 or 3, H, W) tensor, got {tuple(t.shape)}")
    arr = t[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    if image.alpha is not None:
        arr = np.concatenate([arr, image.alpha.float().clamp(0, 1).cpu().numpy()[..., None]], axis=-1)
    if fmt == "JPEG" and (image.alpha is not None or image.bit_depth == 16):
        raise ValueError(
            f"JPEG cannot store {'an alpha channel' if image.alpha is not None else '16-bit samples'}; "
            f"write {path.with_suffix('.png').name} instead"
        )
    channels = arr.shape[-1]
    if image.bit_depth == 16 and channels == 1:
        pil = Image.fromarray((arr[..., 0] * 65535 + 0.5).astype(np.uint16))
    else:  # Pillow writes colour images with 8 bits per sample
        u8 = (arr * 255 + 0.5).astype(np.uint8)
        pil = Image.fromarray(u8[..., 0] if channels == 1 else u8)  # L, LA, RGB or RGBA from the shape
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        pil.save(tmp, format=fmt)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
