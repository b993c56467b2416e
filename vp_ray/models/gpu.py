"""GPU bookkeeping shared by the model actors: memory caps, peaks, freeing, where an actor runs.

torch is imported only where a model already runs (``sys.modules``): CPU-only actors such as
``model=classic`` or ``model=sim`` never pay its import.
"""

from __future__ import annotations

import gc
import logging
import os
import sys

log = logging.getLogger(__name__)
OOM_MARKERS = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


def _cuda():
    """torch, if it is loaded here and sees a GPU; else None."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and torch.cuda.is_available() else None


def is_cuda_oom(error: BaseException) -> bool:
    """True if ``error`` or anything in its cause/context chain is a GPU out-of-memory error."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if type(error).__name__ == "OutOfMemoryError" or any(
                marker in str(error).lower() for marker in OOM_MARKERS):
            return True
        error = error.__cause__ or error.__context__
    return False


def limit_memory(device, limit_gb: float | None) -> None:
    """Cap PyTorch's allocations on ``device`` at ``limit_gb`` GiB (no-op without a limit or a GPU).
    Beyond it allocations raise CUDA out-of-memory instead of crowding out what shares the GPU."""
    if not limit_gb or device.type != "cuda":
        return
    import torch

    index = device.index if device.index is not None else torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    fraction = limit_gb * 2**30 / total
    if not 0 < fraction <= 1:
        raise ValueError(f"a GPU memory limit of {limit_gb:g} GiB is not within the GPU's "
                         f"{total / 2**30:.1f} GiB")
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    log.info("GPU memory capped at %.1f of %.1f GiB", limit_gb, total / 2**30)


def free_memory() -> None:
    gc.collect()
    torch = _cuda()
    if torch is not None:
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()


def allocated_bytes() -> int:
    torch = _cuda()
    return torch.cuda.memory_allocated() if torch is not None else 0


def start_peak() -> None:
    torch = _cuda()
    if torch is not None:
        torch.cuda.reset_peak_memory_stats()


def peak_gb() -> float:
    torch = _cuda()
    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch is not None else 0.0


def where() -> str:
    """This process's place in the cluster: node, GPU(s) Ray gave it, pid (manifest column).

    Outside Ray (the single-video command) it must not touch Ray: asking it for a runtime context
    would start a local instance, the very cost that command avoids.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        node, gpus = "local", os.environ.get("CUDA_VISIBLE_DEVICES", "-") or "-"
    else:
        context = ray.get_runtime_context()
        node = context.get_node_id()[:8]
        gpus = ",".join(str(g) for g in context.get_accelerator_ids().get("GPU", [])) or "-"
    return f"node={node} gpu={gpus} pid={os.getpid()}"
