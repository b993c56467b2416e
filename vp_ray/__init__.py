"""vp-ray: VideoPainter video inpainting (object removal) over many clips on many GPUs, with Ray.

``vp_ray.VideoPainter`` is the Python API (``vp_ray.models.videopainter``). It is imported on first
use: ``import vp_ray`` stays light (no torch), as the driver and the CPU stages need it.
"""

__version__ = "0.1.0"
__all__ = ["VideoPainter"]


def __getattr__(name: str):
    if name == "VideoPainter":
        from vp_ray.models.videopainter import VideoPainter

        return VideoPainter
    raise AttributeError(f"module 'vp_ray' has no attribute {name!r}")
