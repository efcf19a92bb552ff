"""PQS selection: differentiable top-K over token relevance (Gumbel-softmax, straight-through).

In training, K tokens per prototype are drawn without replacement from
softmax((relevance + Gumbel noise) / tau); the forward pass uses the hard one-hot picks,
the backward pass the soft weights, so the relevance map learns which tokens make good
queries. At inference the graph takes the plain top-K (`QueryHead.forward`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gumbel_topk(logits: torch.Tensor, k: int, tau: float = 1.0,
                generator: torch.Generator | None = None, noise: bool = True) -> torch.Tensor:
    """logits (..., N) -> selection (..., K, N): rows one-hot forward, soft backward."""
    g = 0.0
    if noise:
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype)
        g = -torch.log(-torch.log(u.clamp(1e-9, 1 - 1e-9)))
    y = (logits + g) / tau
    picks = []
    taken = torch.zeros_like(logits, dtype=torch.bool)
    for _ in range(k):
        soft = F.softmax(y.masked_fill(taken, float("-inf")), dim=-1)
        hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
        picks.append(hard + soft - soft.detach())
        taken = taken | hard.bool()
    return torch.stack(picks, dim=-2)


def hard_topk(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (..., K) of the K largest logits (what the exported graph does)."""
    return torch.topk(logits, k, dim=-1).indices
