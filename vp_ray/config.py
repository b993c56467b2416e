"""Typed configuration: one dataclass per Hydra config group, the single place of every default.

The YAML files under ``conf/`` hold only what differs from these defaults; these dataclasses fix
the keys, types and allowed values, so a misspelt key (``model.num_inference_step=30``), a value
outside an Enum (``resize_mode=squash``) or out of range (``target_fps=0``) fails when the config
is composed, before Ray starts, instead of an hour into a run. Every field is documented where it
is declared.

Two markers on fields, through ``setting(...)``:

* ``check``: the values a field accepts, beyond its type (checked by ``check_values``).
* ``output=False``: the field cannot change a clip's files (resources, placement, logging, where
  things are). Every other field is part of the fingerprint of the clips whose stages read it
  (``output_settings``; each stage names the settings it reads), so a resumed run redoes the clips
  whose settings changed; a new field is in by default.
* ``hashed_as``: with ``output=False``, a field that once was fingerprinted: it stays in the
  fingerprint as this fixed value (its former default), so that clips of earlier runs keep theirs.

``load_config`` turns the composed config into a ``Config`` object (Enums as Enums, paths absolute):
the driver and every stage and Ray worker receive that object, never a plain dict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from vp_ray.errors import ConfigError


# Mode-like settings. Hydra rejects any other value when the config is composed, listing these.
# Member names are the values a user types; code compares the members, never their strings.
class DatasetFormat(Enum):
    csv = "csv"
    parquet = "parquet"
    demo = "demo"


class Layout(Enum):
    generic = "generic"
    vpdata = "vpdata"


class PromptCoords(Enum):
    source = "source"
    model = "model"


class InpaintMethod(Enum):
    telea = "telea"
    ns = "ns"


class Dtype(Enum):
    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"


class MemoryMode(Enum):
    auto = "auto"
    resident = "resident"
    text_encoder_offload = "text_encoder_offload"
    model_offload = "model_offload"
    sequential_offload = "sequential_offload"


class AttentionBackend(Enum):
    auto = "auto"
    pytorch = "pytorch"
    cudnn = "cudnn"
    flash = "flash"
    efficient = "efficient"
    math = "math"


class FirstFrameFill(Enum):
    flux = "flux"
    opencv = "opencv"
    none = "none"


class Sam2Device(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class PlacementMode(Enum):
    auto = "auto"
    cpu = "cpu"
    shared = "shared"
    dedicated = "dedicated"


class ResizeMode(Enum):
    stretch = "stretch"
    pad = "pad"
    crop = "crop"


class Preprocess(Enum):
    reference = "reference"
    opencv = "opencv"


class Task(Enum):
    run = "run"
    evaluate = "evaluate"


class EvalProtocol(Enum):
    vpbench = "vpbench"
    hole = "hole"


class EvalReference(Enum):
    auto = "auto"
    source = "source"
    ground_truth = "ground_truth"


@dataclass(frozen=True)
class Check:
    """A condition on a value, and how to say it to a user."""

    test: Callable[[Any], bool]
    need: str


POSITIVE = Check(lambda v: v > 0, "> 0")
NON_NEGATIVE = Check(lambda v: v >= 0, ">= 0")
AT_LEAST_ONE = Check(lambda v: v >= 1, ">= 1")
FRACTION = Check(lambda v: 0 < v < 1, "between 0 and 1")
CRF = Check(lambda v: 0 <= v <= 51, "within 0..51 (H.264)")
ALL_POSITIVE = Check(lambda v: all(x > 0 for x in v), "a list of durations > 0")
ROWS_OR_ALL = Check(lambda v: v >= -1, ">= 0, or -1 for all")
SIZE_OR_NEVER = Check(lambda v: v >= -1, ">= 0, or -1 for never")
TIMESTEP_RANGE = Check(lambda v: len(v) == 2 and 0 <= v[0] < v[1] <= 1000,
                       "[low, high] with 0 <= low < high <= 1000")
TRUE_FALSE_AUTO = Check(lambda v: isinstance(v, bool) or v == "auto", "true, false or auto")
SET_BY_THE_DRIVER = Check(lambda v: False, "left unset (the driver sets it)")


def setting(default: Any = MISSING, *, factory: Callable[[], Any] | None = None, check: Check | None = None,
            output: bool = True, hashed_as: Any = MISSING) -> Any:
    """A config field with its markers (module docstring). ``None`` always passes ``check``."""
    metadata = {"check": check, "output": output}
    if hashed_as is not MISSING:
        metadata["hashed_as"] = hashed_as
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DatasetConfig:
    """Where clip records come from (``dataset=...``)."""

    name: str = setting(MISSING, output=False)
    # csv | parquet | demo. ``demo`` generates synthetic clips under ``path`` on first use.
    format: DatasetFormat = setting(DatasetFormat.csv, output=False)
    # The CSV/Parquet file (or a directory of Parquet files): a path, a file:// URI or a remote URI
    # pyarrow opens (s3://, gs://, ...; read by the driver alone); for ``demo``, the folder to fill.
    path: str = setting(MISSING, output=False)
    # generic: our column names (README); vpdata: the VPData/VPBench metadata CSV
    # (path, mask_id, start_frame, end_frame, fps, caption) with its folder conventions.
    layout: Layout = setting(Layout.generic, output=False)
    # Relative video paths are resolved against this folder ("" = the dataset file's folder).
    # (Resolved paths are part of each record, so the roots themselves are not fingerprinted.)
    video_root: str = setting("", output=False)
    # Relative mask paths (and VPData's video_inpainting/ tree) are resolved against this folder.
    mask_root: str = setting("", output=False)
    # Used when a record's prompt is empty or missing (it becomes the record's prompt).
    default_prompt: str = setting("A clean, natural background scene.", output=False)
    # Pixel space of click points and boxes: "source" (the original video's pixels) or
    # "model" (the resized frame the model sees, e.g. 720x480).
    prompt_coords: PromptCoords = setting(PromptCoords.source)
    # Extra columns of the dataset file to ignore (any other unknown column is an error).
    ignore_columns: list[str] = setting(factory=list, output=False)
    # Process only the first N records (-1 = all); handy for a trial run.
    limit: int = setting(-1, check=ROWS_OR_ALL, output=False)
    # demo only: how many synthetic clips, and how many source frames each, at what rate. (The
    # videos change with them under the same paths, so they are fingerprinted.)
    demo_num_clips: int = setting(4, check=AT_LEAST_ONE)
    demo_num_frames: int = setting(24, check=AT_LEAST_ONE)
    demo_fps: float = setting(8.0, check=POSITIVE)


@dataclass
class ModelConfig:
    """The inpainter (``model=...``): fields every model has. Each model extends it below."""

    name: str = MISSING
    # Frame size the model runs at (height, width). VideoPainter's I2V backbone only runs at 480x720.
    height: int = setting(480, check=AT_LEAST_ONE)
    width: int = setting(720, check=AT_LEAST_ONE)
    # Resources of one inpainting actor; one actor per GPU for GPU models.
    num_gpus: float = setting(0.0, check=NON_NEGATIVE, output=False)
    num_cpus: float = setting(1.0, check=NON_NEGATIVE, output=False)
    # Host memory reserved per actor in bytes (0 = no reservation), so Ray never places more
    # actors on a node than its RAM holds.
    memory: int = setting(0, check=NON_NEGATIVE, output=False)

    def __getitem__(self, key: str) -> Any:
        """A setting by its key, an Enum as its value: the form inpainters written against plain
        settings read (``vp_ray/models/videopainter.py``); everything else reads attributes."""
        value = getattr(self, key)
        return value.value if isinstance(value, Enum) else value


@dataclass
class ClassicModelConfig(ModelConfig):
    """``model=classic``: temporal propagation + OpenCV inpainting on the CPU, no weights."""

    name: str = "classic"
    # Radius (pixels) of cv2.inpaint for pixels never visible in any frame.
    inpaint_radius: int = setting(5, check=AT_LEAST_ONE)
    # cv2.inpaint method for never-visible pixels: telea | ns.
    inpaint_method: InpaintMethod = InpaintMethod.telea


@dataclass
class FaultyModelConfig(ClassicModelConfig):
    """``model=faulty``: ``classic`` with injected faults, for testing failure handling."""

    name: str = "faulty"
    # Clips longer than this raise a CUDA out-of-memory error (-1 = never) ...
    oom_above_frames: int = setting(-1, check=SIZE_OR_NEVER)
    # ... or longer than this once the memory saver is on.
    oom_above_frames_with_saver: int = setting(-1, check=SIZE_OR_NEVER)
    # Where ``[crash-once]`` remembers which clips already crashed their worker, and the gate's folder.
    fault_state_dir: str = setting("/tmp/vp_ray_faults", output=False)
    # Let this many clips through the model (counted over all actors), then hold every later one
    # until the file ``open`` exists in ``fault_state_dir`` (-1 = never hold): tests bring a run into
    # a known state with it (``vp_ray.models.gate``).
    hold_after_clips: int = setting(-1, check=SIZE_OR_NEVER, output=False)


@dataclass
class SimModelConfig(ModelConfig):
    """``model=sim``: no weights, a model's time per frame (sleeping), for scale tests on CPUs."""

    name: str = "sim"
    # Seconds per frame. VideoPainter at 50 steps on an H200 takes about 100 s for 49 frames
    # (2 s per frame) against about 0.3 s to decode and 3 s to encode and write the clip
    # (bench/RESULTS.md); scale tests keep that ratio at a shorter time.
    seconds_per_frame: float = setting(2.0, check=NON_NEGATIVE)
    # A clip's time is spent in this many steps, each reported as a denoising step is.
    num_inference_steps: int = setting(10, check=AT_LEAST_ONE, output=False)
    # Seconds an actor takes to start, as loading a model does (VideoPainter: about 40 s).
    load_seconds: float = setting(0.0, check=NON_NEGATIVE, output=False)
    # GPU memory each actor holds while it lives, as a loaded model would (0 = none; CPU: ignored).
    gpu_memory_gb: float = setting(0.0, check=NON_NEGATIVE, output=False)
    # As ``model=faulty``: pass this many clips, then hold the rest until ``<gate_dir>/open`` exists.
    hold_after_clips: int = setting(-1, check=SIZE_OR_NEVER, output=False)
    gate_dir: str = setting("/tmp/vp_ray_gate", output=False)


@dataclass
class VideoPainterModelConfig(ModelConfig):
    """``model=videopainter`` (and ``model=tiny``): CogVideoX-5b-I2V + the VideoPainter branch."""

    name: str = "videopainter"
    num_gpus: float = setting(1.0, check=NON_NEGATIVE, output=False)
    num_cpus: float = setting(4.0, check=NON_NEGATIVE, output=False)
    # Stock CogVideoX-5b-I2V folder (scheduler, text_encoder, tokenizer, transformer, vae).
    base_model_path: str = "ckpt/CogVideoX-5b-I2V"
    # VideoPainter context-encoder branch folder (config.json + safetensors).
    branch_path: str = "ckpt/VideoPainter/checkpoints/branch"
    # Write a tiny random-init checkpoint tree at the paths above if they are missing.
    create_tiny_if_missing: bool = setting(False, output=False)
    num_inference_steps: int = setting(50, check=AT_LEAST_ONE)
    guidance_scale: float = setting(6.0, check=NON_NEGATIVE)
    use_dynamic_cfg: bool = True
    negative_prompt: str = ""
    dtype: Dtype = Dtype.bfloat16
    # Where the weights live: auto (picks by free GPU memory) | resident | text_encoder_offload (all
    # resident but T5, kept in pinned host memory and brought to the GPU for each clip's prompts: 8.9
    # GiB less, 0.2 s per clip) | model_offload | sequential_offload. Moving weights changes no
    # number, so it is not fingerprinted.
    memory_mode: MemoryMode = setting(MemoryMode.auto, output=False)
    # VAE tiling + slicing: null = follow the memory mode (resident: untiled; text_encoder_offload:
    # large tiles, two per frame; offload modes: small tiles, diffusers' size), true = small tiles,
    # false = untiled. Tiles give slightly different pixels, so it is fingerprinted.
    vae_tiling: Optional[bool] = None
    # Cap on the GPU memory this actor's PyTorch may allocate, in GiB (null = the whole GPU).
    # Allocations beyond it raise CUDA out-of-memory (and take the OOM ladder) instead of
    # crowding out what shares the GPU, e.g. SAM2 with sam2.placement=shared.
    gpu_memory_limit_gb: Optional[float] = setting(None, check=POSITIVE, output=False)
    # Keep frame 0 as the original (its mask is cleared), as the reference scripts do.
    first_frame_gt: bool = True
    # With first_frame_gt, how frame 0's masked region is filled before it conditions the clip:
    # flux (FLUX.1-Fill, as the original's batch scripts; weights at flux_fill_path) | opencv
    # (cv2.inpaint, Telea: light, no weights) | none (left black, as the original's single-clip demo).
    first_frame_fill: FirstFrameFill = FirstFrameFill.opencv
    # FLUX.1-Fill folder (diffusers layout, e.g. black-forest-labs/FLUX.1-Fill-dev) for first_frame_fill=flux,
    # and its denoising steps (the original: 50).
    flux_fill_path: str = "ckpt/flux_inp"
    flux_num_inference_steps: int = setting(50, check=AT_LEAST_ONE)
    # Re-impose the original background in latent space at every denoising step.
    replace_gt: bool = True
    # Add branch features to background tokens only.
    mask_add: bool = True
    # Clips shorter than 49 frames come out as noise; pad them (mirrored) to 49 and cut back. A long
    # clip's last partial window likewise (off: a clip is cut to 4k+1 frames, or 48n+1 beyond 49).
    pad_short_clips: bool = True
    # ID resampling, as the original's inpaint_id_resample.sh: the VideoPainterID LoRA is loaded and
    # every backbone block also attends to the masked tokens of its output in the previous window
    # (clips longer than one window). Needs mask_add. One-window clips change too: their masked
    # tokens are attended twice, as in the original. (Python API: the LoRA is
    # VideoPainter.from_pretrained(id_lora=...), and each inpaint call may switch it off.)
    id_resampling: bool = False
    # ID resampling's weight of the previous window (it scales their values; the original: 0.5).
    # 0: every window attends to its own masked tokens instead.
    prev_clip_weight: float = setting(0.5, check=NON_NEGATIVE)
    # The VideoPainterID LoRA file (id_resampling; written tiny with create_tiny_if_missing).
    id_lora_path: str = "ckpt/VideoPainterID/checkpoints/pytorch_lora_weights.safetensors"
    # Speed, exact: torch.compile every block of the backbone and the branch (regional compilation:
    # the blocks share their compiled graphs, with ID resampling too). Paid once per actor, at its
    # first window (about 20 s); clips of another length compile again (keep pad_short_clips=true:
    # every window is 49 frames). H100: 1.51-1.54 s per step against 1.93-1.97 s eager (bench/RESULTS.md).
    # auto (default): on where it pays back, on a GPU when the run gives each inpainting actor at least
    # 55 denoising steps (316 with approx_fp8_linear; clips / actors x windows x steps;
    # vp_ray/models/compile_plan.py): a single one-window clip at 50 steps stays eager. Off on the
    # CPU, with pad_short_clips=false, and where it cannot run: sequential_offload,
    # approx_attention_reuse (true is refused with those). The choice is logged by each actor and
    # recorded per clip (the manifest's `compiled` column). Results equal the eager ones within float
    # rounding (inductor emulates eager's bf16 casts), so it is not fingerprinted: a resumed run
    # keeps its clips whatever auto chooses this time.
    compile_blocks: bool | str = setting("auto", check=TRUE_FALSE_AUTO, output=False, hashed_as=False)
    # Speed, exact: torch.compile each resnet block of the VAE (its group norms, activations and causal
    # padding fuse around the convolutions). H100, 49x480x720 (bench/RESULTS.md): encode 1.01 -> 0.53 s and
    # decode 2.27 -> 1.07 s untiled, 1.11 -> 0.58 s and 2.52 -> 1.19 s with large tiles; in the batch job
    # (large tiles) a window's two encodes and decode 4.90 -> 2.53 s. Compiling costs 77 s (untiled) to
    # 142 s (large tiles) in the probe and 196 s in the batch job, once per actor, and again for every
    # other tile size the OOM ladder moves to. Compiled outputs lie as close to a float32 VAE's as eager
    # bf16 does (relative L2 0.022 against 0.027 for the encode), so it is not fingerprinted. auto
    # (default): on where it pays back, on a GPU when the run gives each inpainting actor at least 83
    # windows (196 s / 2.37 s; compile_plan.py); a single clip and a short run stay eager. Off on the CPU
    # and with sequential_offload (true is refused with it). Logged by each actor and recorded per clip
    # (the manifest's `compiled` column).
    compile_vae: bool | str = setting("auto", check=TRUE_FALSE_AUTO, output=False, hashed_as=False)
    # Speed, exact: the attention kernel (PyTorch SDPA) of the backbone and the branch. auto: each actor
    # times one backbone attention call with cudnn, flash and efficient when it starts (under a second at
    # an H200's timings; without a GPU nothing is timed) and puts the fastest first in PyTorch's order;
    # pytorch: PyTorch's order (cuDNN first on Hopper and datacenter Blackwell, flash first on others,
    # e.g. RTX 5090); cudnn | flash | efficient | math: that kernel first, untimed. A call the kernel
    # cannot take goes to the next. Every kernel is exact attention, but they round differently (results
    # not bit-identical). Not fingerprinted: with auto, actors on different GPUs of one run may choose
    # differently, so the setting cannot pin the kernel anyway, and redoing clips for a change in rounding
    # gains nothing; each clip's manifest row names its kernel (attention_backend).
    attention_backend: AttentionBackend = setting(AttentionBackend.auto, output=False)
    # Speed, APPROXIMATE (changes results; 1 = off): Pyramid Attention Broadcast (diffusers' hook) on
    # the backbone's attention. At steps whose timestep lies inside approx_attention_reuse_timesteps,
    # each attention computes its output at one step in N and reuses it for the N - 1 steps after.
    # Quality cannot be judged without real weights: compare runs with `python -m vp_ray.tools.compare`.
    approx_attention_reuse: int = setting(1, check=AT_LEAST_ONE)
    approx_attention_reuse_timesteps: list[int] = setting(factory=lambda: [100, 800], check=TIMESTEP_RANGE)
    # Speed, APPROXIMATE (changes results): the blocks' projections (attention Q/K/V/out,
    # feed-forward) of the backbone and the branch as FP8 matmuls (torchao, per-row scales; install
    # with pip install 'vp-ray[fp8]'). Needs a GPU of compute capability 8.9+ (Ada, Hopper,
    # Blackwell) and dtype=bfloat16; best with compile_blocks (the activations' scaling is fused).
    # Not with ID resampling (its LoRA layers) or sequential_offload.
    approx_fp8_linear: bool = False
    # Not a setting: the driver's estimate of the denoising steps each inpainting actor runs, for
    # compile_blocks=auto (vp_ray/models/compile_plan.py); a value given on the command line is refused.
    steps_per_actor: int | None = setting(None, check=SET_BY_THE_DRIVER, output=False)


@dataclass
class ClusterConfig:
    """Where and how Ray runs (``cluster=...``). Nothing here changes a clip's files."""

    name: str = setting(MISSING, output=False)
    # null: connect to RAY_ADDRESS or a running cluster, else start a local one;
    # "local": always start a new local instance; "auto": connect or fail; "host:port".
    address: Optional[str] = setting(None, output=False)
    # Resources of a locally started instance (null = detect). Logical GPUs are fine in tests.
    num_cpus: Optional[int] = setting(None, check=AT_LEAST_ONE, output=False)
    num_gpus: Optional[int] = setting(None, check=NON_NEGATIVE, output=False)
    object_store_memory: Optional[int] = setting(None, check=POSITIVE, output=False)
    include_dashboard: bool = setting(False, output=False)
    dashboard_host: str = setting("127.0.0.1", output=False)
    dashboard_port: int = setting(8265, check=AT_LEAST_ONE, output=False)
    # Inpainting actors: null = one per GPU of the cluster (or 1 on a CPU-only cluster).
    inpaint_actors: Optional[int] = setting(None, check=AT_LEAST_ONE, output=False)
    # Let the inpainting pool grow onto nodes added mid-run (min 1 actor, max unbounded).
    autoscale: bool = setting(False, output=False)
    # Each inpainting actor works on two clips at once: one on the GPU while the next one's arrays
    # are read and prepared and the last one's result is saved, so the GPU does not wait for the
    # host between clips (vp_ray/stages/turns.py). Never two on the GPU; results are the same.
    # false: one clip at a time, the next waiting at the actor.
    overlap_clips: bool = setting(True, output=False)
    # CPU tasks that decode/prepare and encode/write clips in parallel.
    prepare_concurrency: int = setting(2, check=AT_LEAST_ONE, output=False)
    # Backpressure: at most this many clips per model actor wait for one, and as many (plus the
    # writers) wait behind them for a writer: their frames fill <output_dir>/.work (about 135 MB
    # per 480x720 clip) whatever the dataset's size.
    prepared_per_actor: int = setting(2, check=AT_LEAST_ONE, output=False)
    write_concurrency: int = setting(2, check=AT_LEAST_ONE, output=False)
    # The pipeline starts once every model actor pool has its first actors loaded (and fails if
    # that takes longer than this): while actors load nothing else runs, and Ray Data would then
    # let the prepare tasks run past the backpressure bound to keep itself busy.
    actor_start_timeout_s: float = setting(1800.0, check=POSITIVE, output=False)
    # Ray Data raises if no clip finishes for this long (a clip can take minutes).
    no_progress_timeout_s: float = setting(3600.0, check=POSITIVE, output=False)
    # Every this many seconds the driver appends its memory, the object store's and the clips
    # waiting in <output_dir>/.work to <output_dir>/run_samples.csv.
    sample_every_s: float = setting(5.0, check=POSITIVE, output=False)
    # The console's status line (done/total, failed, clips/hour, ETA, clips waiting per stage) is
    # redrawn in place on a terminal; where output goes to a file it is printed as a new line
    # every this many seconds.
    status_every_s: float = setting(60.0, check=POSITIVE, output=False)
    # Ray Data's own per-operator progress bars (or, off a terminal, its progress log lines).
    ray_progress_bars: bool = setting(False, output=False)
    # Echo every worker's output (model loading, per-clip denoising steps) on the console. Off,
    # it lands in <output_dir>/logs/<date_time>/workers/ (and Ray's session logs) only.
    worker_logs_to_console: bool = setting(False, output=False)
    # Port of the node's Prometheus endpoint when starting a local Ray (null = Ray's default
    # choice; the scrape config Ray writes under its session dir names it either way).
    metrics_export_port: Optional[int] = setting(None, check=AT_LEAST_ONE, output=False)


@dataclass
class Sam2Config:
    """SAM2, for records whose mask comes from clicks or a box (``sam2=...``)."""

    name: str = setting(MISSING, output=False)
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
    image_size: Optional[int] = setting(None, check=Check(lambda v: v >= 32 and v % 16 == 0,
                                                          ">= 32 and a multiple of 16"))
    # auto (cuda if the actor sees a GPU) | cpu | cuda
    device: Sam2Device = Sam2Device.auto
    # Autocast dtype on CUDA: bfloat16 (as sam2's demos) | float16 | float32 (no autocast). CPU runs float32.
    dtype: Dtype = Dtype.bfloat16
    # Where SAM2 actors go: auto (shared when inpainting actors take one whole GPU each, else cpu)
    # | cpu | shared | dedicated. The reasons are in vp_ray/runtime/sam2_placement.py.
    placement: PlacementMode = setting(PlacementMode.auto, output=False)
    # SAM2 actors; one serves many GPUs (seconds per clip against minutes of inpainting).
    # dedicated: also the number of GPUs taken from inpainting.
    pool_size: int = setting(1, check=AT_LEAST_ONE, output=False)
    # shared: GPU share of each SAM2 actor; each inpainting actor asks for 1 - pool_size * this
    # (pool_size * gpu_fraction must stay below 0.5).
    gpu_fraction: float = setting(0.1, check=FRACTION, output=False)
    # Cap on each SAM2 actor's GPU memory in GiB (null = none): with placement=shared, the
    # inpainting actor's cap plus this must fit the card (31 GiB usable on a 32 GB card).
    gpu_memory_limit_gb: Optional[float] = setting(None, check=POSITIVE, output=False)
    # CPUs reserved per SAM2 actor (raise it with placement=cpu so Ray does not oversubscribe).
    num_cpus: float = setting(1.0, check=NON_NEGATIVE, output=False)
    # A first-frame mask smaller than this many pixels (model frame) is flagged in the manifest.
    min_mask_area: int = setting(64, check=NON_NEGATIVE)
    # Mask = logits > this (0.0 = probability 0.5, as sam2's demos).
    mask_threshold: float = 0.0


@dataclass
class RetryConfig:
    """What happens when a clip runs out of GPU memory (``retry=...``). Not fingerprinted: a clip that
    never ran out of memory is the same whatever they say, and one that was shortened or ran with a
    memory saver says so in its row (``degraded``, ``warnings``); a resumed run keeps it."""

    # max_seconds rungs tried after an OOM at the configured length, longest first.
    oom_max_seconds: list[float] = setting(factory=lambda: [4.0, 2.0], check=ALL_POSITIVE, output=False)
    # After an OOM, switch on the model's cheaper memory savers (VAE tiling, then offload)
    # before shortening the clip.
    use_memory_savers: bool = setting(True, output=False)
    # A clip whose worker process dies (host OOM kill, crash) is retried on a restarted
    # worker at most this many times, then recorded as failed. With cluster.overlap_clips a
    # death while two clips shared the process is not counted: each runs again alone.
    max_worker_deaths: int = setting(2, check=NON_NEGATIVE, output=False)


@dataclass
class EvalConfig:
    """``task=evaluate``: how a finished run is scored (README, "Evaluation"). Nothing here changes a
    clip's files; the run's own settings (dataset, model, overrides) must be given as for the run."""

    # vpbench: the VideoPainter authors' evaluation, their surprises included (README lists them);
    # hole: each metric inside the hole and outside it, both images masked the same way.
    protocol: EvalProtocol = setting(EvalProtocol.vpbench, output=False)
    # The video a result is compared with: auto (the record's ground_truth_path where it has one,
    # else the source, as the authors compare with their source) | source | ground_truth.
    reference: EvalReference = setting(EvalReference.auto, output=False)
    # The hole is the object's mask dilated by this many source pixels (square kernel), as the
    # authors' script dilates it (--dilate_size); null = the run's dilate_size.
    dilate_size: Optional[int] = setting(None, check=NON_NEGATIVE, output=False)
    # vpbench: composite the result into the reference outside the hole before scoring (the
    # authors' --replace_gt; their script scores both ways). hole scores the result as written.
    replace_gt: bool = setting(True, output=False)
    # Score a clip's first N frames (the authors' --max_video_length 49; null = all, as their
    # long-video configuration).
    max_frames: Optional[int] = setting(49, check=AT_LEAST_ONE, output=False)
    # The authors' script takes every int(fps // down_sample_fps)-th source frame; the run picks frames
    # by time. A clip whose frames differ from the authors' is scored on the run's and says so.
    down_sample_fps: float = setting(8.0, check=POSITIVE, output=False)
    # Weights of the learned metrics (README "Evaluation"; ckpt/README.md): a metric whose file is
    # found neither here nor in its usual cache gets null columns and one line saying which file.
    lpips_backbone: str = setting("ckpt/squeezenet1_1-b8a52dc0.pth", output=False)
    lpips_linear: str = setting("ckpt/lpips/squeeze.pth", output=False)
    clip_score_model: str = setting("ckpt/clip-vit-large-patch14", output=False)
    clip_temporal_model: str = setting("ckpt/ViT-B-32.pt", output=False)
    i3d_model: str = setting("ckpt/i3d_rgb_imagenet.pt", output=False)
    # Scoring actors and their resources: null = one per CPU the cluster has (num_gpus = 0) or one
    # per GPU. Learned metrics run on the actor's GPU where it has one (device=auto).
    actors: Optional[int] = setting(None, check=AT_LEAST_ONE, output=False)
    num_cpus: float = setting(1.0, check=POSITIVE, output=False)
    num_gpus: float = setting(0.0, check=NON_NEGATIVE, output=False)
    device: Sam2Device = setting(Sam2Device.auto, output=False)


@dataclass
class QAConfig:
    """Quality scores of every clip that need no ground truth (README, "Quality scores"), computed by
    the write stage, and the thresholds over which a clip is ``suspect``. Nothing here changes a
    clip's files, so nothing is fingerprinted: a resumed run keeps its clips and their scores (from
    their meta.json), and judges them again with the thresholds it is given, in the manifest."""

    # Compute the scores of the clips this run writes (off: their qa_* columns are null; a clip done
    # before keeps the scores it has). To mark no clip suspect, set the thresholds to null.
    enabled: bool = setting(True, output=False)
    # The scores run on frames shrunk to this width in pixels (narrower frames as they are). At 180 they
    # cost 3 to 4 % of the write stage's time for a 49-frame 480x720 clip; at full size, 28 to 41 %
    # (bench/RESULTS.md, "Quality scores in the write stage").
    width: int = setting(180, check=AT_LEAST_ONE, output=False)
    # Thresholds (null: that score never marks a clip suspect). qa_drift: mean absolute change of the
    # background, in 8-bit levels (an inpainter that decodes every pixel from latents, as VideoPainter
    # does, changes it by its VAE's error: not measured here without the weights; tune on your clips).
    max_drift: Optional[float] = setting(8.0, check=NON_NEGATIVE, output=False)
    # qa_flicker: the hole's median frame-to-frame change (after optical flow) over the background's;
    # 1 = as steady as the background.
    max_flicker: Optional[float] = setting(3.0, check=NON_NEGATIVE, output=False)
    # qa_seam: the result's gradient on the hole's outline over the gradient beside it; 1 = no seam.
    max_seam: Optional[float] = setting(2.0, check=NON_NEGATIVE, output=False)
    # qa_object: the share (0..1) of the removed object's distinctive colours found again where it was.
    max_object: Optional[float] = setting(0.5, check=NON_NEGATIVE, output=False)


@dataclass
class ReviewConfig:
    """What a run takes from the review of its output folder (``<output_dir>/review.parquet``, written by
    ``python -m vp_ray.review``; README, "Review"). A clip's edits there (prompt, seed, dilation,
    max_seconds, a click or box) replace its dataset values in every run of this output_dir."""

    # Redo exactly the clips the review requeued (whatever their folders hold), with their edits, and
    # leave every other clip as it is: the manifest keeps their rows and the failures table theirs.
    requeue: bool = setting(False, output=False)


@dataclass
class Config:
    # run: inpaint the dataset into output_dir; evaluate: score the finished run in output_dir
    # against its references (<output_dir>/evaluation.parquet and evaluation.json; settings: eval.*).
    task: Task = setting(Task.run, output=False)
    # The groups chosen on the command line (dataset=csv model=tiny ...); model holds one of
    # ModelConfig's subclasses, the model's own schema.
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    cluster: ClusterConfig = MISSING
    sam2: Sam2Config = MISSING
    retry: RetryConfig = field(default_factory=RetryConfig)
    eval: EvalConfig = setting(factory=EvalConfig, output=False)
    qa: QAConfig = setting(factory=QAConfig, output=False)
    review: ReviewConfig = setting(factory=ReviewConfig, output=False)
    # Results go to <output_dir>/clips/<clip_id>/; the same output_dir resumes a run.
    output_dir: str = setting(MISSING, output=False)
    # Run seed; each clip's seed is derived from it and the clip id (order-independent).
    seed: int = setting(42, check=NON_NEGATIVE)
    # Frames are resampled to this rate (slower sources keep their own rate).
    target_fps: float = setting(8.0, check=POSITIVE)
    # Clips are cut to this span from first to last frame: round(max_seconds x fps) + 1 frames
    # (6.0 s at 8 fps = 49 frames, VideoPainter's window; longer clips run in chained windows).
    max_seconds: float = setting(6.0, check=POSITIVE)
    # Clips with fewer frames than this after resampling fail (a 1-frame "video" is an image).
    min_frames: int = setting(9, check=AT_LEAST_ONE)
    # How frames and mask files become the model's inputs. reference: as the original's inpaint.py
    # (PIL Lanczos resize; masks dilated at the source size, then Lanczos-resized and kept where >= 0.5;
    # the object blacked out with the undilated mask before resizing). opencv: OpenCV area/bilinear
    # resize, nearest-neighbour masks dilated at the model's size, object blacked out with the dilated mask.
    preprocess: Preprocess = Preprocess.reference
    # Masks are dilated with a square kernel of this many pixels (0 = off): source pixels for mask
    # files under preprocess=reference (the original dilates 32 px at the source size), model pixels
    # otherwise (opencv, and masks SAM2 makes on the model-size frames).
    dilate_size: int = setting(32, check=NON_NEGATIVE)
    # How a frame of another aspect ratio becomes height x width: stretch | pad | crop.
    resize_mode: ResizeMode = ResizeMode.stretch
    # Write result.mp4 at the source's size and aspect instead of the model's.
    restore_size: bool = False
    # H.264 quality (constant rate factor: lower = better, 17 is visually lossless).
    crf: int = setting(17, check=CRF)
    # Only segment/load masks and write the mask files (no inpainting, no inpainting GPU actors).
    mask_only: bool = False
    # Print the plan (clips found, rows that will fail the checks, resources, estimated GPU-hours)
    # and stop: no Ray, no model, nothing written.
    dry_run: bool = setting(False, output=False)
    # Write <output_dir>/report.html at the end of the run (counts, plots, slowest and failed
    # clips, thumbnails of up to report_max_clips clips).
    report: bool = setting(True, output=False)
    report_max_clips: int = setting(48, check=NON_NEGATIVE, output=False)


GROUP_SCHEMAS = {"dataset": DatasetConfig, "cluster": ClusterConfig, "retry": RetryConfig, "sam2": Sam2Config}


def model_schemas() -> list[type[ModelConfig]]:
    """Every model's schema: the subclasses of ``ModelConfig`` (the registry, ``vp_ray.models.MODELS``,
    names each model's schema; this module knows none of its entries, so the registry may import it)."""
    found, todo = [], [ModelConfig]
    while todo:
        subclasses = todo.pop().__subclasses__()
        found += subclasses
        todo += subclasses
    return found


def register_configs() -> None:
    """Schemas for the YAML files' ``defaults``: ``base_<group>``, and ``base_<model>`` per model schema."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, schema in GROUP_SCHEMAS.items():
        cs.store(group=group, name=f"base_{group}", node=schema)
    for schema in model_schemas():
        cs.store(group="model", name=f"base_{schema.name}", node=schema)


def _fields(node: DictConfig):
    """(name, value, dataclass field) of a composed node whose type is one of the schemas."""
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return []
    return [(f.name, node[f.name], f) for f in dataclasses.fields(schema)]


def check_values(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Every field whose value its ``check`` refuses, as ``key=value: must be ...`` lines."""
    problems = []
    for name, value, spec in _fields(cfg):
        if isinstance(value, DictConfig):
            problems += check_values(value, f"{prefix}{name}.")
            continue
        check = spec.metadata.get("check")
        if check is not None and value is not None and not check.test(value):
            shown = list(value) if OmegaConf.is_list(value) else value
            problems.append(f"{prefix}{name}={shown}: must be {check.need}")
    return problems


def unknown_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Keys the schemas do not know: Hydra lets ``+key=value`` add them (a typo then goes unseen)."""
    schema = OmegaConf.get_type(cfg)
    if not dataclasses.is_dataclass(schema):
        return []
    known = {f.name for f in dataclasses.fields(schema)}
    problems = [f"{prefix}{key}: not a setting (a typo?)" for key in cfg if key not in known]
    for key in known & set(cfg):
        if isinstance(cfg[key], DictConfig):
            problems += unknown_keys(cfg[key], f"{prefix}{key}.")
    return problems


def output_settings(node: Any, keys: Collection[str] | None = None) -> dict[str, Any]:
    """The settings of ``node`` (a ``Config`` or one of its groups) that can change a clip's files:
    every field not marked ``output=False``, as JSON holds them (Enums by name). ``keys``: only these
    top-level ones (the settings a clip's stages read, ``vp_ray.stages.ClipSettings``)."""
    settings: dict[str, Any] = {}
    for spec in dataclasses.fields(node):
        if keys is not None and spec.name not in keys:
            continue
        if "hashed_as" in spec.metadata:
            settings[spec.name] = spec.metadata["hashed_as"]
        elif spec.metadata.get("output", True):
            value = getattr(node, spec.name)
            settings[spec.name] = output_settings(value) if dataclasses.is_dataclass(value) else _plain(value)
    return settings


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def with_values(node: Any, **values: Any) -> Any:
    """``node`` (a typed config or group) with these settings; an Enum's may be given by its value,
    as on the command line (``memory_mode="resident"``): for code that builds settings by hand."""
    def typed(name: str, value: Any) -> Any:
        current = getattr(node, name)   # an unknown name fails here
        return type(current)(value) if isinstance(current, Enum) and not isinstance(value, Enum) else value

    return dataclasses.replace(node, **{name: typed(name, value) for name, value in values.items()})


def as_dict(cfg: Any) -> dict[str, Any]:
    """A typed config (or group) as nested plain values, Enums as their strings: for showing it
    (report.html) and for YAML, never for reading settings."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


# Config keys holding file system paths: made absolute on the driver, because Ray workers
# (and `ray job submit`, whose working directory is a temporary copy) see another cwd.
PATH_KEYS = {"output_dir", "path", "video_root", "mask_root", "base_model_path", "branch_path", "id_lora_path",
             "flux_fill_path",
             "checkpoint", "lpips_backbone", "lpips_linear", "clip_score_model", "clip_temporal_model", "i3d_model"}


def load_config(cfg: DictConfig, base_dir: str | None = None) -> Config:
    """The composed config as the typed ``Config`` that the driver and every stage and worker receive.

    Resolves interpolations (``${hydra:...}`` fails inside Ray workers), refuses values the
    schema's checks reject (``ConfigError``) and makes paths absolute. Missing mandatory values
    raise ``MissingMandatoryValue``.
    """
    typed = OmegaConf.to_object(cfg)
    problems = unknown_keys(cfg) + check_values(cfg) + _cross_checks(typed) + _remote_paths(typed)
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
    _absolute_paths(typed, Path(base_dir or Path.cwd()))
    return typed


def _groups(node: Any, prefix: str = ""):
    """(dotted key, node, field name, value) of every field of ``node`` and its groups, depth first."""
    for spec in dataclasses.fields(node):
        value = getattr(node, spec.name)
        if dataclasses.is_dataclass(value):
            yield from _groups(value, f"{prefix}{spec.name}.")
        else:
            yield f"{prefix}{spec.name}", node, spec.name, value


def _absolute_paths(cfg: Config, base: Path) -> None:
    for _, node, name, value in _groups(cfg):
        if name in PATH_KEYS and isinstance(value, str):
            value = value.removeprefix("file://")  # file:///data/x -> /data/x
            if value and "://" not in value and not Path(value).expanduser().is_absolute():
                value = str((base / value).resolve())  # (a remote URI: only dataset.path, _remote_paths)
            setattr(node, name, value)


def _clashes(model: ModelConfig, option: str, clashes: list[tuple[str, bool, str]]) -> list[str]:
    """One problem per (key, clashing, why) that clashes with model.<option>=true."""
    problems = []
    for key, clash, why in clashes:
        if clash:
            value = getattr(model, key)
            shown = str(value).lower() if isinstance(value, bool) else _plain(value)
            problems.append(f"model.{option}=true cannot be combined with model.{key}={shown}: {why}")
    return problems


def _cross_checks(cfg: Config) -> list[str]:
    """Rules that involve more than one field (an unknown ``model.name`` is the registry's to refuse:
    the prepare stage's check)."""
    problems = []
    model = cfg.model
    problems += model_cross_checks(model)
    sam2 = cfg.sam2
    taken = sam2.pool_size * sam2.gpu_fraction
    if sam2.placement in (PlacementMode.shared, PlacementMode.auto) and not taken < 0.5:
        problems.append(f"sam2.pool_size x sam2.gpu_fraction = {taken:g}: must be below 0.5, so that no "
                        "two inpainting actors fit on one GPU (sam2.placement=shared)")
    return problems


def model_cross_checks(model: ModelConfig) -> list[str]:
    """The rules between a model's own settings (a run's, or ``VideoPainter.from_pretrained``'s)."""
    problems = []
    if isinstance(model, VideoPainterModelConfig):
        if model.id_resampling and not model.mask_add:
            problems.append("model.id_resampling=true needs model.mask_add=true (its token mask is the masked tokens)")
        if model.compile_blocks is True:   # auto leaves compile off where it cannot run
            problems += _clashes(model, "compile_blocks", compile_blockers(model))
        if model.compile_vae is True:
            problems += _clashes(model, "compile_vae", vae_compile_blockers(model))
        if model.approx_fp8_linear:
            problems += _clashes(model, "approx_fp8_linear", [
                ("dtype", model.dtype is not Dtype.bfloat16, "FP8 scales are computed from bfloat16 weights"),
                ("id_resampling", model.id_resampling, "its LoRA layers are not converted"),
                ("memory_mode", model.memory_mode is MemoryMode.sequential_offload,
                 "its hooks sit inside every block")])
    return problems


def compile_blockers(model: VideoPainterModelConfig) -> list[tuple[str, bool, str]]:
    """(setting, whether it is set so, why) for what compiled blocks cannot run with: ``auto`` leaves
    compile off under them (``vp_ray/models/compile_plan.py``), an explicit ``true`` is refused."""
    return [("memory_mode", model.memory_mode is MemoryMode.sequential_offload, "its hooks sit inside every block"),
            ("approx_attention_reuse", model.approx_attention_reuse > 1,
             "its per-step state would recompile every step")]


def vae_compile_blockers(model: VideoPainterModelConfig) -> list[tuple[str, bool, str]]:
    """As ``compile_blockers``, for the compiled VAE (``compile_vae``)."""
    return [("memory_mode", model.memory_mode is MemoryMode.sequential_offload,
             "its hooks sit inside every resnet block")]


def _remote_paths(cfg: Config) -> list[str]:
    """Only the dataset file may be a remote URI (the driver alone reads it, with pyarrow's file
    systems); videos, masks, weights and outputs are opened by libraries that need a path."""
    return [f"{key}={value}: only dataset.path may be a URI (s3://, gs://, ...); this must be a path every "
            "node can open (a shared or mounted file system)"
            for key, _, name, value in _groups(cfg)
            if name in PATH_KEYS and isinstance(value, str) and "://" in value and not value.startswith("file://")
            and key != "dataset.path"]


def model_settings(schema: type, values: dict[str, Any]) -> ModelConfig:
    """A model's settings given in Python (``VideoPainter.from_pretrained``) as the typed group a worker
    receives, checked as a composed config is: a key the schema lacks, a wrong type, an Enum value
    it does not list, a value out of range or a clash between settings is one ``ConfigError``."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        node = OmegaConf.merge(OmegaConf.structured(schema), values)
    except OmegaConfBaseException as error:
        raise ConfigError(f"{error.full_key}: {str(error).splitlines()[0]}") from None
    typed = OmegaConf.to_object(node)
    problems = check_values(node) + model_cross_checks(typed)
    if problems:
        raise ConfigError("invalid settings: " + "; ".join(problems))
    return typed


def conf_dir() -> str:
    """The folder of Hydra's config tree: ``conf/`` beside the package in a checkout, else the
    copy installed as the package ``vp_ray.conf``."""
    checkout = Path(__file__).resolve().parents[1] / "conf"
    if (checkout / "config.yaml").is_file():
        return str(checkout)
    from importlib.resources import files

    return str(files("vp_ray.conf"))


def compose(overrides: list[str]) -> DictConfig:
    """The typed config Hydra composes for these command-line overrides (as launch.py gets it)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()  # sam2 initialises a global Hydra of its own when imported
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir()):
        return hydra_compose("config", overrides=overrides)
