"""VAE tiling whose tiles add up to the frame, in two sizes.

diffusers' CogVideoX VAE encodes and decodes tiles that overlap by a fraction of a tile
(``tile_overlap_factor_*``: 1/6 of a tile's height, 1/5 of its width) and crops each blended tile
to its stride. Those cuts are whole latent pixels only when the fractions divide the tile into
whole latent pixels: for the real model (480x720 frames, tiles of 240x360 = 30x45 latents) the
defaults do; for a smaller model they need not (tiles of 32x48 pixels on a 64x96 frame come out
as a 9x12 latent and a 70x110 decoded frame). ``enable_vae_tiling`` keeps the defaults where their
cuts are whole, else takes the whole fraction nearest the default.

``small`` tiles are diffusers' default size (240x360 pixels: 3 x 3 tiles on a 480x720 frame), what
the OOM ladder switches on. ``large`` tiles span the frame's height and half its width (2 tiles):
measured on an H200 (bench/RESULTS.md), a 49-frame encode and decode take 1.08 + 2.40 s and add
4.6 / 8.9 GiB at their peaks, against 1.43 + 3.27 s and 1.9 / 3.8 GiB for small tiles and 0.97 +
2.16 s and 7.6 / 14.8 GiB untiled.
"""

from __future__ import annotations


def stride(tile: int, overlap: float) -> int:
    """Pixels (or latent pixels) between the starts of two tiles of ``tile`` (diffusers'
    ``overlap_height`` / ``overlap_width``)."""
    return int(tile * (1 - overlap))


def tiles_add_up(tile_pixels: int, tile_latents: int, overlap: float, scale: int) -> bool:
    """Whether tiled encode and decode both cut whole latent pixels with this overlap (the same
    integer arithmetic as diffusers' ``tiled_encode`` / ``tiled_decode``)."""
    encode_stride = stride(tile_pixels, overlap)                      # pixels
    encode_kept = tile_latents - int(tile_latents * overlap)          # latents
    decode_stride = stride(tile_latents, overlap)                     # latents
    decode_kept = tile_pixels - int(tile_pixels * overlap)            # pixels
    return encode_stride == encode_kept * scale and decode_kept == decode_stride * scale


def tile_overlap(tile_pixels: int, tile_latents: int, default: float, scale: int) -> float:
    """``default`` when its cuts are whole, else the fraction k / tile_latents nearest to it that is."""
    if tiles_add_up(tile_pixels, tile_latents, default, scale):
        return default
    candidates = [k / tile_latents for k in range(1, tile_latents)
                  if tiles_add_up(tile_pixels, tile_latents, k / tile_latents, scale)]
    if not candidates:
        raise ValueError(f"no tile overlap cuts a {tile_pixels}-pixel tile into whole latent pixels")
    return min(candidates, key=lambda overlap: abs(overlap - default))


TILE_SIZES = ("small", "large")
# diffusers' default overlaps (tile_overlap_factor_height / _width of AutoencoderKLCogVideoX).
DEFAULT_OVERLAP_HEIGHT, DEFAULT_OVERLAP_WIDTH = 1 / 6, 1 / 5


def spatial_scale(vae) -> int:
    """Pixels per latent pixel of the VAE (8 for CogVideoX's)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def fitting_tile(length: int, tiles: int, default: float, scale: int) -> tuple[int, float]:
    """The smallest tile (pixels, overlap) whose cuts are whole that covers ``length`` pixels in
    ``tiles`` tiles, encoding and decoding: diffusers starts a tile every stride up to the end."""
    for tile_latents in range(-(-length // (scale * tiles)), 4 * length // scale + 1):
        tile_pixels = tile_latents * scale
        try:
            overlap = tile_overlap(tile_pixels, tile_latents, default, scale)
        except ValueError:
            continue
        encoded = len(range(0, length, stride(tile_pixels, overlap)))
        decoded = len(range(0, length // scale, stride(tile_latents, overlap)))
        if encoded == decoded == tiles:
            return tile_pixels, overlap
    raise ValueError(f"no tile covers {length} pixels in {tiles} tiles")


def enable_vae_tiling(vae, size: str = "small", height: int | None = None, width: int | None = None) -> dict:
    """Slicing and tiling on, with tiles whose cuts add up to the frame; returns ``enable_tiling``'s
    arguments. ``large`` tiles need the frame's ``height`` and ``width``."""
    scale = spatial_scale(vae)
    if size == "small":   # diffusers' default size: half the VAE's sample size each way
        tile_height, tile_width = vae.config.sample_height // 2, vae.config.sample_width // 2
        arguments = {
            "tile_sample_min_height": tile_height, "tile_sample_min_width": tile_width,
            "tile_overlap_factor_height":
                tile_overlap(tile_height, tile_height // scale, DEFAULT_OVERLAP_HEIGHT, scale),
            "tile_overlap_factor_width": tile_overlap(tile_width, tile_width // scale, DEFAULT_OVERLAP_WIDTH, scale),
        }
    elif size == "large":
        # Overlaps near 1/6 both ways: on a 480x720 frame, 576x432-pixel tiles (the ones measured).
        tile_height, overlap_height = fitting_tile(height, 1, DEFAULT_OVERLAP_HEIGHT, scale)
        tile_width, overlap_width = fitting_tile(width, 2, DEFAULT_OVERLAP_HEIGHT, scale)
        arguments = {"tile_sample_min_height": tile_height, "tile_sample_min_width": tile_width,
                     "tile_overlap_factor_height": overlap_height, "tile_overlap_factor_width": overlap_width}
    else:
        raise ValueError(f"unknown tile size {size!r}: expected one of {', '.join(TILE_SIZES)}")
    vae.enable_slicing()
    vae.enable_tiling(**arguments)
    return arguments
