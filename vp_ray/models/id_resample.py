"""ID resampling: every backbone block attends to its own output of the previous window as well.

The original's ``CogVideoXAttnProcessor2_0_resample``, on the stock transformer: an attention
processor per block (``set_attn_processor``) plus forward hooks, no copy of the transformer.

In every attention of the 42 backbone blocks the keys and values are doubled: after the current
tokens' K/V come masked ones (token mask = the clip's object, text tokens never):

* with no previous window (window 0, a one-window clip) or weight 0: the current tokens' own K/V,
  zeroed outside the mask;
* in window w >= 1: K/V of block i's output at the previous window's last denoising step (after the
  branch was added), passed through block i's ``norm1`` with the current step's time embedding,
  projected by the block's (LoRA-adapted) ``to_k``/``to_v``, zeroed outside the mask and multiplied
  by ``prev_clip_weight`` (before ``norm_k``, so for the keys the weight cancels: it scales V).

Zeroed keys become ``norm_k``'s bias and stay in the softmax, as in the original. The original's
quirk is reproduced: the mask applied to the previous window's tokens is the previous window's at
step 0 and the current window's from step 1 on (the original reassigns it after every step).

Only the saved tokens that some mask keeps are held: those masked in the previous window or in the
current one (the original holds every token of every block: 8.54 GiB at full size). Every other
token's keys and values are zeroed whatever it held, so the results are the same.

Compiled blocks (``speed.compile_blocks``) share their graphs with ID resampling as without: the
per-block work that needs the block's index (its saved tokens, scattered back to full length and
normed) runs in a forward pre-hook, outside the compiled ``forward``, and reaches the attention as
tensor arguments (``attention_kwargs``). All blocks share one processor object holding no index:
torch.compile guards on Python values, so a processor per block, or a lookup by index in it, would
compile every block apart (and a saved-token count that changes per clip would recompile too).
The price: the previous window's normed tokens of a block (0.2 GiB at full size) are held through
the block's feed-forward as well, not its attention alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import apply_rotary_emb


class IdResampling:
    """State, hooks and processors of ID resampling on one transformer; driven by the pipeline
    (``set_masks``, ``step_done``) and by the window loop (``start_window``, ``finish_window``).

    ``attach`` puts the hooks and the processor in place, ``detach`` gives the transformer back
    as it was: ID resampling can be on for one call and off for the next. The processor is made
    once, so that compiled blocks find the same object at every attach and keep their graphs."""

    def __init__(self, transformer, weight: float):
        self.weight = float(weight)
        self.transformer = transformer
        self.blocks = transformer.transformer_blocks
        self.processor = ResampleAttnProcessor(self.weight)   # one for every block
        self._replaced: dict | None = None   # the processors it stands in for while attached
        self._handles: list = []
        self.mask = self.prev_mask = None   # [B, text + video tokens] bool
        self.saved: dict[int, torch.Tensor] | None = None
        # Which tokens (text + video) ``saved`` holds; the next window's masked video tokens.
        self.saved_index: torch.Tensor | None = None
        self.next_video_mask: torch.Tensor | None = None
        self._keep_index: torch.Tensor | None = None
        self.first = self.last = True
        self.capture = False
        self._captured: dict[int, torch.Tensor] = {}

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> None:
        """Every block resamples from here on (its hooks and the shared processor in place)."""
        if self.attached:
            return
        for index, block in enumerate(self.blocks):
            self._handles.append(block.register_forward_pre_hook(self._pass_state(index), with_kwargs=True))
            self._handles.append(block.register_forward_hook(self._keep_output(index)))  # after the branch's
        self._replaced = self.transformer.attn_processors
        self.transformer.set_attn_processor(self.processor)

    def detach(self) -> None:
        """The transformer as before ``attach``: hooks removed, its own processors back, nothing held."""
        if not self.attached:
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.transformer.set_attn_processor(self._replaced)
        self._replaced = None
        self.clear()

    # ------------------------------------------------------------------ driven by the window loop
    def start_window(self, first: bool, last: bool, next_video_mask: torch.Tensor | None = None) -> None:
        """``next_video_mask``: the next window's masked video tokens [1, N] (not for the last)."""
        if first:
            self.clear()
        self.first, self.last, self.next_video_mask, self._keep_index = first, last, next_video_mask, None

    def clear(self) -> None:
        """Drop every tensor held: at a clip's first window, and after a failed call."""
        self.saved = self.saved_index = self.mask = self.prev_mask = self.next_video_mask = None
        self._keep_index, self._captured, self.capture = None, {}, False

    def finish_window(self) -> None:
        self.saved, self.saved_index = (None, None) if self.last else (self._captured, self._keep_index)
        self._captured, self.capture = {}, False
        if self.last:
            self.mask = self.prev_mask = None

    # ------------------------------------------------------------------ driven by the pipeline
    def set_masks(self, tokens_masked: torch.Tensor | None, text_tokens: int, num_steps: int) -> None:
        """The window's token mask (video tokens [B, N, 1] bool), before its first step."""
        if tokens_masked is None:
            raise ValueError("ID resampling needs mask_add (its token mask)")
        mask = tokens_masked[..., 0]
        previous = self.mask
        self.mask = torch.cat([mask.new_zeros((mask.shape[0], text_tokens)), mask], dim=1)
        self.prev_mask = previous if previous is not None else self.mask
        self.capture = num_steps == 1 and not self.last

    def step_done(self, step: int, num_steps: int) -> None:
        self.prev_mask = self.mask  # the original's reassignment after each step
        self.capture = step + 2 == num_steps and not self.last  # keep the last step's outputs

    # ------------------------------------------------------------------ the blocks' hooks
    def previous_tokens(self, index: int, text_tokens: int, temb: torch.Tensor) -> torch.Tensor | None:
        """Block ``index``'s saved output, normalised by its ``norm1`` at the current step (``temb``)."""
        if self.saved is None:
            return None
        held = self.saved[index]
        saved = held.new_zeros((held.shape[0], self.mask.shape[1], held.shape[2]))
        saved[:, self.saved_index] = held
        norm_video, norm_text, _, _ = self.blocks[index].norm1(saved[:, text_tokens:], saved[:, :text_tokens],
                                                             temb)
        return torch.cat([norm_text, norm_video], dim=1)

    def _pass_state(self, index: int):
        """A pre-hook giving block ``index``'s attention what it appends: ``id_previous`` (the
        previous window's normed tokens, or None: the current tokens' own) and ``id_keep`` (the
        token mask applied to them, [B, tokens, 1])."""
        def hook(module, args, kwargs):
            temb = kwargs["temb"] if "temb" in kwargs else args[2]
            text = kwargs["encoder_hidden_states"] if "encoder_hidden_states" in kwargs else args[1]
            previous = self.previous_tokens(index, text.shape[1], temb) if self.weight > 0.0 else None
            keep = (self.mask if previous is None else self.prev_mask).unsqueeze(-1)
            given = kwargs.get("attention_kwargs") or {}
            return args, {**kwargs, "attention_kwargs": {**given, "id_previous": previous, "id_keep": keep}}

        return hook

    def _keep_output(self, index: int):
        def hook(module, args, output):
            if self.capture:
                hidden_states, encoder_hidden_states = output
                tokens = torch.cat([encoder_hidden_states, hidden_states], dim=1)
                self._captured[index] = tokens[:, self._tokens_to_keep(encoder_hidden_states.shape[1])].detach()
                if self.saved is not None:   # this block is done with the previous window's tokens:
                    self.saved.pop(index)    # a middle window never holds two windows' states whole

        return hook

    def _tokens_to_keep(self, text_tokens: int) -> torch.Tensor:
        """Indices of the tokens masked in this window or the next (text tokens never are)."""
        if self._keep_index is None:
            keep = self.mask.any(dim=0)
            if self.next_video_mask is not None:
                keep = keep.clone()
                keep[text_tokens:] |= self.next_video_mask.to(keep.device).any(dim=0)
            self._keep_index = keep.nonzero().squeeze(1)
        return self._keep_index


class ResampleAttnProcessor:
    """CogVideoX joint attention (text + video tokens, RoPE on video) with the masked tokens appended:
    ``id_previous`` (weighted by ``weight``) where given, else the current tokens, both kept where
    ``id_keep`` (``IdResampling._pass_state``)."""

    def __init__(self, weight: float):
        self.weight = weight

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None,
                 id_previous=None, id_keep=None):
        if id_keep is None:
            raise RuntimeError("ID resampling's attention needs its token mask (IdResampling's pre-hook)")
        text_tokens = encoder_hidden_states.size(1)
        tokens = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        batch = tokens.shape[0]
        query, key, value = attn.to_q(tokens), attn.to_k(tokens), attn.to_v(tokens)
        if id_previous is not None:
            extra_key = attn.to_k(id_previous) * id_keep * self.weight
            extra_value = attn.to_v(id_previous) * id_keep * self.weight
        else:
            extra_key, extra_value = key * id_keep, value * id_keep

        head_dim = key.shape[-1] // attn.heads

        def heads(x):
            return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value, extra_key, extra_value = map(heads, (query, key, value, extra_key, extra_value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key, extra_key = attn.norm_k(key), attn.norm_k(extra_key)
        if image_rotary_emb is not None:
            query[:, :, text_tokens:] = apply_rotary_emb(query[:, :, text_tokens:], image_rotary_emb)
            key[:, :, text_tokens:] = apply_rotary_emb(key[:, :, text_tokens:], image_rotary_emb)
            extra_key[:, :, text_tokens:] = apply_rotary_emb(extra_key[:, :, text_tokens:], image_rotary_emb)
        out = F.scaled_dot_product_attention(query, torch.cat([key, extra_key], dim=-2),
                                             torch.cat([value, extra_value], dim=-2), attn_mask=attention_mask,
                                             dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
        out = attn.to_out[1](attn.to_out[0](out))
        encoder_out, hidden_out = out.split([text_tokens, out.size(1) - text_tokens], dim=1)
        return hidden_out, encoder_out
