"""vp-ray: VideoPainter video inpainting (object removal) over many clips on many GPUs, with Ray."""

__version__ = "0.1.0"
