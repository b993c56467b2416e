"""VAE tiling whose tiles add up to the frame.

diffusers' CogVideoX VAE encodes and decodes tiles that overlap by a fraction of a tile
(``tile_overlap_factor_*``: 1/6 of a tile's height, 1/5 of its width) and crops each blended tile
to its stride. Those cuts are whole latent pixels only when the fractions divide the tile into
whole latent pixels: for the real model (480x720 frames, tiles of 240x360 = 30x45 latents) the
defaults do; for a smaller model they need not (tiles of 32x48 pixels on a 64x96 frame come out
as a 9x12 latent and a 70x110 decoded frame). ``enable_vae_tiling`` keeps the defaults where their
cuts are whole, else takes the whole fraction nearest the default.
"""

from __future__ import annotations


def tiles_add_up(tile_pixels: int, tile_latents: int, overlap: float, scale: int) -> bool:
    """Whether tiled encode and decode both cut whole latent pixels with this overlap (the same
    integer arithmetic as diffusers' ``tiled_encode`` / ``tiled_decode``)."""
    encode_stride = int(tile_pixels * (1 - overlap))                   # pixels
    encode_kept = tile_latents - int(tile_latents * overlap)          # latents
    decode_stride = int(tile_latents * (1 - overlap))                 # latents
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


def enable_vae_tiling(vae) -> dict[str, float]:
    """Slicing and tiling on, with overlaps whose tiles add up to the frame; returns the overlaps."""
    scale = vae.tile_sample_min_height // vae.tile_latent_min_height
    overlaps = {
        "tile_overlap_factor_height": tile_overlap(vae.tile_sample_min_height, vae.tile_latent_min_height,
                                                   vae.tile_overlap_factor_height, scale),
        "tile_overlap_factor_width": tile_overlap(vae.tile_sample_min_width, vae.tile_latent_min_width,
                                                  vae.tile_overlap_factor_width, scale),
    }
    vae.enable_slicing()
    vae.enable_tiling(**overlaps)
    return overlaps
