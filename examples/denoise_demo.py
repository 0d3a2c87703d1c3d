"""Denoising demo: train clginet-tiny on bundled photos for ~5 minutes, report held-out PSNR/SSIM.

Same as ``clg-layers demo``. Options: ``--minutes``, ``--steps``, ``--sigma``, ``--out`` (see ``--help``).
"""

from clg_layers.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
