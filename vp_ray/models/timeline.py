"""Where a clip's time goes on the GPU: marks on the GPU's own timeline, read back as wall-clock times.

The inpainting pipeline marks where each phase of a clip begins (``PHASES``: T5, the VAE encodes, the
denoising loop, ...). On a GPU a mark is a CUDA event recorded on the stream: it neither waits nor
makes the host wait, and it times the GPU's work, not the host running ahead of it. The marks are read
once the clip's frames are back on the host, so the GPU has passed them all: each mark's wall-clock
time is the ``end`` mark's less the GPU time between the two. On a CPU a mark is the wall clock.

From the marks of consecutive clips of one actor, ``vp_ray.runtime.gpu_idle`` works out how long the GPU
waited between one clip's frames coming back and the next clip's first work. torch is imported by
``Timeline`` only: ``model=sim`` reports its phases without it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import pairwise

# In the order a one-window clip passes them. fill: FLUX.1-Fill's first frame (first_frame_fill=flux);
# prompt: T5 (with text_encoder_offload, its visit to the GPU); encode: the window's pixels to the GPU
# and its VAE encodes; denoise: the denoising loop; latents: after the loop, the windows' latents
# joined (or the next window's set-up); decode: the VAE decode; convert: frames to uint8 and back to
# the host.
PHASES = ("fill", "prompt", "encode", "denoise", "latents", "decode", "convert")


@dataclass
class ClipPhases:
    """One clip's GPU timeline: wall-clock times (Unix seconds) and seconds per phase."""

    gpu_started: float            # the clip's first GPU work
    denoise_started: float        # its first denoising step
    denoise_finished: float       # the end of its last step
    gpu_finished: float           # its frames back on the host
    seconds: dict[str, float] = field(default_factory=dict)


def clip_phases(marks: list[tuple[str, float]]) -> ClipPhases:
    """``marks``: (phase, wall-clock start) in order, the last one ``end``. Seconds per phase are
    summed over its spans (one per window for the encodes and the loop of a long clip)."""
    if len(marks) < 2 or marks[-1][0] != "end":
        raise ValueError(f"a clip's timeline needs marks ending with 'end', got {[p for p, _ in marks]}")
    seconds = dict.fromkeys(PHASES, 0.0)
    for (phase, start), (_, end) in pairwise(marks):
        seconds[phase] += end - start
    loops = [i for i, (phase, _) in enumerate(marks) if phase == "denoise"]
    if not loops:
        raise ValueError("a clip's timeline has no denoising loop")
    return ClipPhases(gpu_started=marks[0][1], denoise_started=marks[loops[0]][1],
                      denoise_finished=marks[loops[-1] + 1][1], gpu_finished=marks[-1][1], seconds=seconds)


class Timeline:
    """Marks of one clip (one attempt) on ``device``'s timeline."""

    def __init__(self, device):
        import torch

        self.cuda = torch.device(device).type == "cuda"
        self._marks: list[tuple[str, object]] = []

    def mark(self, phase: str) -> None:
        """From here on the GPU works on ``phase``, until the next mark."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}: expected one of {PHASES}")
        self._marks.append((phase, self._now()))

    def read(self) -> ClipPhases:
        """Ends the timeline; waits for the GPU to pass the end (it has, once the frames are back)."""
        self._marks.append(("end", self._now()))
        if not self.cuda:
            return clip_phases(self._marks)
        end = self._marks[-1][1]
        end.synchronize()
        now = time.time()
        return clip_phases([(phase, now - event.elapsed_time(end) / 1000) for phase, event in self._marks])

    def _now(self):
        if not self.cuda:
            return time.time()
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
