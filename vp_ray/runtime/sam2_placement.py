"""Where the SAM2 actors go, so that every inpainting actor still gets its GPU.

The trap: Ray packs fractional GPU requests onto GPUs that are already partly used instead of
spreading them. Eight SAM2 actors at ``num_gpus=0.25`` fill GPUs 0 and 1, and eight inpainting
actors at ``0.75`` then fit on six GPUs: two are never placed, silently. "A quarter of every
GPU for SAM2" cannot be expressed with fractions once the SAM2 pool has more than one actor.

Modes (``sam2.placement``):

* ``shared`` (the default on GPU clusters, through ``auto``): the ``pool_size`` SAM2 actors ask
  for ``gpu_fraction`` each and every inpainting actor for ``1 - pool_size * gpu_fraction``
  instead of 1. Whatever Ray packs where, even all SAM2 actors on one GPU leave room there for
  one inpainting actor, so all N are placed; and as an inpainting actor still asks for more
  than half a GPU, no two of them ever share one (also when its pool grows). SAM2 is small
  (hiera-large: about 0.9 GB of weights, a few GB while tracking 49 frames) next to
  VideoPainter's 27-31 GB, so it runs beside it on an 80 GB GPU. On a 32 GB GPU use ``cpu``
  or ``dedicated``.
* ``dedicated``: each SAM2 actor takes a whole GPU and the inpainting pool gets the other GPUs.
  Whole GPUs cannot be packed wrongly. SAM2 takes seconds per clip and VideoPainter minutes,
  so one SAM2 GPU keeps up with tens of inpainting GPUs: worth it on large clusters only.
* ``cpu``: SAM2 on CPUs (``num_gpus=0``); inpainting actors keep whole GPUs. The choice on
  CPU-only clusters, and where GPU memory is tight; slow with hiera-large at 1024 px.

Rejected: one SAM2 actor per GPU through a custom resource (``{"sam2_slot": 1}`` per GPU with
``num_gpus=0``). Ray gives an actor without a GPU request ``CUDA_VISIBLE_DEVICES=""``, so
that actor would either run on the CPU or need its own GPU bookkeeping behind Ray's back, and
every node would have to be started with the extra resource.
"""

from __future__ import annotations

from dataclasses import dataclass

from vp_ray.config import PlacementMode, Sam2Config
from vp_ray.errors import ConfigError


@dataclass(frozen=True)
class Sam2Placement:
    """GPUs per SAM2 actor, GPUs per inpainting actor, and GPUs left for the inpainting pool."""

    mode: PlacementMode
    sam2_num_gpus: float
    inpaint_num_gpus: float
    inpaint_gpus_available: float


def plan_placement(sam2_cfg: Sam2Config, model_num_gpus: float, cluster_gpus: float) -> Sam2Placement:
    """The placement for the ``sam2`` config, an inpainting model wanting ``model_num_gpus``
    per actor and a cluster with ``cluster_gpus`` GPUs."""
    mode, size = sam2_cfg.placement, sam2_cfg.pool_size
    if size < 1:
        raise ConfigError(f"sam2.pool_size must be at least 1, not {size}")
    if mode is PlacementMode.auto:
        mode = PlacementMode.shared if cluster_gpus >= 1 and model_num_gpus == 1 else PlacementMode.cpu
    if mode is PlacementMode.cpu:
        return Sam2Placement(mode, 0.0, model_num_gpus, cluster_gpus)
    if cluster_gpus < 1:
        raise ConfigError(f"sam2.placement={mode.value} needs GPUs but the Ray cluster has none")
    if mode is PlacementMode.shared:
        if model_num_gpus != 1:
            raise ConfigError(f"sam2.placement=shared needs inpainting actors of one whole GPU "
                              f"(model.num_gpus={model_num_gpus:g}); use cpu or dedicated")
        taken = size * sam2_cfg.gpu_fraction
        if not 0 < taken < 0.5:
            raise ConfigError(f"sam2.pool_size x sam2.gpu_fraction = {taken:g} must be above 0 and "
                              "below 0.5, so that no two inpainting actors fit on one GPU")
        return Sam2Placement(mode, sam2_cfg.gpu_fraction, round(1 - taken, 6), cluster_gpus)
    # dedicated
    if size >= cluster_gpus:
        raise ConfigError(f"sam2.placement=dedicated with sam2.pool_size={size} leaves no GPU for "
                          f"inpainting (the cluster has {cluster_gpus:g})")
    return Sam2Placement(mode, 1.0, model_num_gpus, cluster_gpus - size)

