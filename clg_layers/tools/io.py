"""Image file I/O, kept here for existing imports: it lives in :mod:`clg_layers.io`.

(:mod:`clg_layers.data` reads images too, and the data sets do not depend on the tools.)
"""

from ..io import DEFAULT_MAX_PIXELS, ImageData, read_image, write_image

__all__ = ["DEFAULT_MAX_PIXELS", "ImageData", "read_image", "write_image"]
