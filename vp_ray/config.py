"""Typed configuration: one dataclass per Hydra config group.

The YAML files under ``conf/`` pick values; these dataclasses fix the keys and
types, so a misspelt override (``model.num_inference_step=30``) fails at start
instead of an hour into a run. Every field is documented where it is declared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class DatasetConfig:
    """Where clip records come from (``dataset=...``)."""

    name: str = MISSING
    # csv | parquet | demo. ``demo`` generates synthetic clips under ``path`` on first use.
    format: str = "csv"
    # The CSV/Parquet file (or a directory of Parquet files); for ``demo``, the folder to fill.
    path: str = MISSING
    # generic: our column names (README); vpdata: the VPData/VPBench metadata CSV
    # (path, mask_id, start_frame, end_frame, fps, caption) with its folder conventions.
    layout: str = "generic"
    # Relative video paths are resolved against this folder ("" = the dataset file's folder).
    video_root: str = ""
    # Relative mask paths (and VPData's video_inpainting/ tree) are resolved against this folder.
    mask_root: str = ""
    # Used when a record's prompt is empty or missing.
    default_prompt: str = "A clean, natural background scene."
    # Pixel space of click points and boxes: "source" (the original video's pixels) or
    # "model" (the resized frame the model sees, e.g. 720x480).
    prompt_coords: str = "source"
    # Extra columns of the dataset file to ignore (any other unknown column is an error).
    ignore_columns: list[str] = field(default_factory=list)
    # Process only the first N records (-1 = all); handy for a trial run.
    limit: int = -1
    # demo only: how many synthetic clips, and how many source frames each.
    demo_num_clips: int = 4
    demo_num_frames: int = 24
    demo_fps: float = 8.0


@dataclass
class ModelConfig:
    """The inpainter (``model=...``): fields every model has. Each model extends it below."""

    name: str = MISSING
    # Frame size the model runs at (height, width). VideoPainter's I2V backbone only runs at 480x720.
    height: int = 480
    width: int = 720
    # Resources of one inpainting actor; one actor per GPU for GPU models.
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    # Host memory reserved per actor in bytes (0 = no reservation), so Ray never places more
    # actors on a node than its RAM holds.
    memory: int = 0


@dataclass
class ClassicModelConfig(ModelConfig):
    """``model=classic``: temporal propagation + OpenCV inpainting on the CPU, no weights."""

    # Radius (pixels) of cv2.inpaint for pixels never visible in any frame.
    inpaint_radius: int = 5
    # cv2.inpaint method for never-visible pixels: telea | ns.
    inpaint_method: str = "telea"


@dataclass
class FaultyModelConfig(ClassicModelConfig):
    """``model=faulty``: ``classic`` with injected faults, for testing failure handling."""

    # Clips longer than this raise a CUDA out-of-memory error (-1 = never) ...
    oom_above_frames: int = -1
    # ... or longer than this once the memory saver is on.
    oom_above_frames_with_saver: int = -1
    # Where ``[crash-once]`` remembers which clips already crashed their worker.
    fault_state_dir: str = "/tmp/vp_ray_faults"


@dataclass
class VideoPainterModelConfig(ModelConfig):
    """``model=videopainter`` (and ``model=tiny``): CogVideoX-5b-I2V + the VideoPainter branch."""

    # Stock CogVideoX-5b-I2V folder (scheduler, text_encoder, tokenizer, transformer, vae).
    base_model_path: str = "ckpt/CogVideoX-5b-I2V"
    # VideoPainter context-encoder branch folder (config.json + safetensors).
    branch_path: str = "ckpt/VideoPainter/checkpoints/branch"
    # Write a tiny random-init checkpoint tree at the paths above if they are missing.
    create_tiny_if_missing: bool = False
    num_inference_steps: int = 50
    guidance_scale: float = 6.0
    use_dynamic_cfg: bool = True
    negative_prompt: str = ""
    # bfloat16 | float16 | float32
    dtype: str = "bfloat16"
    # auto | resident | model_offload | sequential_offload (auto picks by free GPU memory).
    memory_mode: str = "auto"
    # VAE tiling/slicing: null = follow the memory mode, true/false = force.
    vae_tiling: Optional[bool] = None
    # Cap on the GPU memory this actor's PyTorch may allocate, in GiB (null = the whole GPU).
    # Allocations beyond it raise CUDA out-of-memory (and take the OOM ladder) instead of
    # crowding out what shares the GPU, e.g. SAM2 with sam2.placement=shared.
    gpu_memory_limit_gb: Optional[float] = None
    # Keep frame 0 as the original (its mask is cleared), as the reference scripts do.
    first_frame_gt: bool = True
    # With first_frame_gt, how frame 0's masked region is filled before it conditions the clip
    # (the original fills it with FLUX.1-Fill): opencv (cv2.inpaint, Telea) | none (left black,
    # as the original's single-clip demo does).
    first_frame_fill: str = "opencv"
    # Re-impose the original background in latent space at every denoising step.
    replace_gt: bool = True
    # Add branch features to background tokens only.
    mask_add: bool = True
    # Clips shorter than 49 frames come out as noise; pad them (mirrored) to 49 and cut back.
    pad_short_clips: bool = True


@dataclass
class ClusterConfig:
    """Where and how Ray runs (``cluster=...``)."""

    name: str = MISSING
    # null: connect to RAY_ADDRESS or a running cluster, else start a local one;
    # "local": always start a new local instance; "auto": connect or fail; "host:port".
    address: Optional[str] = None
    # Resources of a locally started instance (null = detect). Logical GPUs are fine in tests.
    num_cpus: Optional[int] = None
    num_gpus: Optional[int] = None
    object_store_memory: Optional[int] = None
    include_dashboard: bool = False
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265
    # Inpainting actors: null = one per GPU of the cluster (or 1 on a CPU-only cluster).
    inpaint_actors: Optional[int] = None
    # Let the inpainting pool grow onto nodes added mid-run (min 1 actor, max unbounded).
    autoscale: bool = False
    # CPU tasks that decode/prepare and encode/write clips in parallel.
    prepare_concurrency: int = 2
    write_concurrency: int = 2
    # Ray Data raises if no clip finishes for this long (a clip can take minutes).
    no_progress_timeout_s: float = 3600.0


@dataclass
class Sam2Config:
    """SAM2, for records whose mask comes from clicks or a box (``sam2=...``)."""

    name: str = MISSING
    # Model config inside the sam2 package: configs/sam2/sam2_hiera_l.yaml (SAM 2) or
    # configs/sam2.1/sam2.1_hiera_l.yaml (SAM 2.1); short names (sam2.1_hiera_l.yaml) work too.
    # It must match the checkpoint's generation.
    config: str = "configs/sam2/sam2_hiera_l.yaml"
    # Released checkpoint file ({"model": state_dict}), e.g. sam2_hiera_large.pt or sam2.1_hiera_large.pt.
    checkpoint: str = "ckpt/sam2_hiera_large.pt"
    # No checkpoint: random weights, for tests and benchmarks (masks are meaningless).
    random_init: bool = False
    # Input size of the image encoder (null = the config's 1024). Smaller is faster and coarser;
    # a multiple of 32 is safest (the tests use 128).
    image_size: Optional[int] = None
    # auto (cuda if the actor sees a GPU) | cpu | cuda
    device: str = "auto"
    # Autocast dtype on CUDA: bfloat16 (as sam2's demos) | float16 | float32 (no autocast). CPU runs float32.
    dtype: str = "bfloat16"
    # Where SAM2 actors go: auto (shared when inpainting actors take one whole GPU each, else cpu)
    # | cpu | shared | dedicated. The reasons are in vp_ray/sam2_placement.py.
    placement: str = "auto"
    # SAM2 actors; one serves many GPUs (seconds per clip against minutes of inpainting).
    # dedicated: also the number of GPUs taken from inpainting.
    pool_size: int = 1
    # shared: GPU share of each SAM2 actor; each inpainting actor asks for 1 - pool_size * this
    # (pool_size * gpu_fraction must stay below 0.5).
    gpu_fraction: float = 0.1
    # CPUs reserved per SAM2 actor (raise it with placement=cpu so Ray does not oversubscribe).
    num_cpus: float = 1.0
    # A first-frame mask smaller than this many pixels (model frame) is flagged in the manifest.
    min_mask_area: int = 64
    # Mask = logits > this (0.0 = probability 0.5, as sam2's demos).
    mask_threshold: float = 0.0


@dataclass
class RetryConfig:
    """What happens when a clip runs out of GPU memory (``retry=...``)."""

    # max_seconds rungs tried after an OOM at the configured length, longest first.
    oom_max_seconds: list[float] = field(default_factory=lambda: [4.0, 2.0])
    # Try the model's cheaper memory savers (e.g. VAE tiling) before shortening the clip.
    memory_savers_first: bool = True
    # A clip whose worker process dies (host OOM kill, crash) is retried on a restarted
    # worker at most this many times, then recorded as failed.
    max_worker_deaths: int = 2


@dataclass
class Config:
    dataset: Any = MISSING
    model: Any = MISSING
    cluster: Any = MISSING
    sam2: Any = MISSING
    retry: RetryConfig = field(default_factory=RetryConfig)
    # Results go to <output_dir>/clips/<clip_id>/; the same output_dir resumes a run.
    output_dir: str = MISSING
    # Run seed; each clip's seed is derived from it and the clip id (order-independent).
    seed: int = 42
    # Frames are resampled to this rate (slower sources keep their own rate).
    target_fps: float = 8.0
    # Clips are cut to this many seconds (49 frames at 8 fps for 6.0 s).
    max_seconds: float = 6.0
    # Clips with fewer frames than this after resampling fail (a 1-frame "video" is an image).
    min_frames: int = 9
    # Masks are dilated with a square kernel of this many pixels (0 = off).
    dilate_size: int = 32
    # How a frame of another aspect ratio becomes height x width: stretch | pad | crop.
    resize_mode: str = "stretch"
    # Write result.mp4 at the source's size and aspect instead of the model's.
    restore_size: bool = False
    # H.264 quality (constant rate factor: lower = better, 17 is visually lossless).
    crf: int = 17
    # Only segment/load masks and write the mask files (no inpainting, no inpainting GPU actors).
    mask_only: bool = False


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="dataset", name="base_dataset", node=DatasetConfig)
    cs.store(group="model", name="base_classic", node=ClassicModelConfig)
    cs.store(group="model", name="base_videopainter", node=VideoPainterModelConfig)
    cs.store(group="model", name="base_faulty", node=FaultyModelConfig)
    cs.store(group="cluster", name="base_cluster", node=ClusterConfig)
    cs.store(group="retry", name="base_retry", node=RetryConfig)
    cs.store(group="sam2", name="base_sam2", node=Sam2Config)


# Config keys holding file system paths: made absolute on the driver, because Ray workers
# (and `ray job submit`, whose working directory is a temporary copy) see another cwd.
PATH_KEYS = {"output_dir", "path", "video_root", "mask_root", "base_model_path", "branch_path",
             "checkpoint"}


def to_plain_config(cfg: Any, base_dir: str | None = None) -> dict[str, Any]:
    """Resolve interpolations (``${hydra:...}`` fails inside Ray workers) and make paths absolute."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    base = Path(base_dir or Path.cwd())

    def absolutize(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (str((base / v).resolve()) if k in PATH_KEYS and isinstance(v, str) and v
                        and not Path(v).expanduser().is_absolute() else absolutize(v))
                    for k, v in node.items()}
        return node

    return absolutize(plain)
