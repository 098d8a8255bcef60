"""Multi-head attention kernel, chosen once per process.

On CUDA with flash-attn 3 (`flash_attn_interface`) or 2 (`flash_attn`) installed, half-precision
inputs go to flash-attn; everything else uses torch's scaled_dot_product_attention, which picks
its own fused kernel. All paths take [batch, length, heads, head_dim] and mask keys at positions
>= `k_lens[b]`. Queries are never masked: outputs at padded query positions are computed and
ignored by the caller.
"""

from __future__ import annotations

import functools
import importlib
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Backend = Literal["flash3", "flash2", "sdpa"]
_FLASH_DTYPES = (torch.float16, torch.bfloat16)


@functools.cache
def attention_backend() -> Backend:
    """The kernel family this process uses: flash-attn 3, flash-attn 2, or SDPA."""
    if not torch.cuda.is_available():
        return "sdpa"
    for backend, module in (("flash3", "flash_attn_interface"), ("flash2", "flash_attn")):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return backend  # type: ignore[return-value]
    return "sdpa"


def attention(q: Tensor, k: Tensor, v: Tensor, k_lens: Tensor | None = None) -> Tensor:
    """Softmax attention of q [B, Lq, H, D] over k, v [B, Lk, H, D]; returns [B, Lq, H, D]."""
    backend = attention_backend()
    if backend != "sdpa" and q.is_cuda and q.dtype in _FLASH_DTYPES:
        return _flash_attention(backend, q, k, v, k_lens)
    return sdpa_attention(q, k, v, k_lens)


def key_padding_mask(k_lens: Tensor, num_keys: int) -> Tensor:
    """Boolean [B, num_keys], True where a key is real."""
    return torch.arange(num_keys, device=k_lens.device)[None, :] < k_lens[:, None]


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, k_lens: Tensor | None = None) -> Tensor:
    mask = None if k_lens is None else key_padding_mask(k_lens, k.shape[1])[:, None, None, :]
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2)


def _flash_attention(backend: Backend, q: Tensor, k: Tensor, v: Tensor, k_lens: Tensor | None) -> Tensor:
    flash = importlib.import_module("flash_attn_interface" if backend == "flash3" else "flash_attn")
    if k_lens is None:
        return _output(flash.flash_attn_func(q, k, v))
    batch, q_len = q.shape[:2]
    keep = key_padding_mask(k_lens, k.shape[1])
    cu_q = torch.arange(batch + 1, device=q.device, dtype=torch.int32) * q_len
    cu_k = F.pad(k_lens.to(device=q.device, dtype=torch.int32).cumsum(0, dtype=torch.int32), (1, 0))
    out = flash.flash_attn_varlen_func(q.flatten(0, 1), k[keep], v[keep], cu_q, cu_k, q_len, k.shape[1])
    return _output(out).unflatten(0, (batch, q_len))


def _output(result: Tensor | tuple[Tensor, ...]) -> Tensor:
    # flash-attn 3 returns (out, softmax_lse) in some releases.
    return result[0] if isinstance(result, tuple) else result


class Attention(nn.Module):
    """The kernel as a parameter-free module, so that `parallelize` can swap in a distributed one
    (context_parallel.UlyssesAttention) without the model code knowing."""

    def forward(self, q: Tensor, k: Tensor, v: Tensor, k_lens: Tensor | None = None) -> Tensor:
        return attention(q, k, v, k_lens)
