"""Two clips at once in an inpainting actor: one on the GPU, the other's host work beside it.

With ``cluster.overlap_clips`` each inpainting actor runs two calls at once (Ray Data's
``max_concurrent_calls_per_actor=2``). A call reads its clip's arrays and prepares them on the host,
waits for the GPU's turn, and saves its result after giving the turn back. So while one clip runs
on the GPU, the next one is read and prepared and the last one saved and handed back, and the GPU
goes from one clip to the next without waiting for the host. Only one clip at a time is ever on
the GPU: the memory plan is one clip's.

The next clip's T5 and VAE encodes stay in its own turn: they are GPU work, which running early
would only move (the GPU is busy with the loop meanwhile), and on a 32 GB card T5 visits the GPU
only while no other clip's work is there (``memory_mode=text_encoder_offload``).

A clip whose worker process died before runs alone. A death takes down every clip in the process,
so a death while clips shared it is charged to none of them (``workdir.count_worker_attempt``): each
runs again alone, where a death is its own and counts towards ``retry.max_worker_deaths``. Alone, it
takes down no other, and its finished row is saved before the next clip is let in.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager


class ClipTurns:
    def __init__(self):
        self._state = threading.Condition()
        self._admitted = 0          # clips in the actor (host work, waiting, or on the GPU)
        self._alone = False         # the clip in the actor runs alone
        self._waiting_alone = 0     # clips waiting to run alone: no other is admitted before them
        self._gpu = threading.Lock()

    @contextmanager
    def clip(self, alone: bool = False):
        """A clip's whole stay in the actor; ``alone``: with no other clip in it."""
        with self._state:
            if alone:
                self._waiting_alone += 1
                self._state.wait_for(lambda: not self._admitted)
                self._waiting_alone -= 1
                self._alone = True
            else:
                self._state.wait_for(lambda: not self._alone and not self._waiting_alone)
            self._admitted += 1
        try:
            yield
        finally:
            with self._state:
                self._admitted -= 1
                self._alone = False
                self._state.notify_all()

    @contextmanager
    def gpu(self):
        """The clip's turn on the GPU: one clip at a time."""
        with self._gpu:
            yield
