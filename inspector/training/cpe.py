"""CPE: angular-margin (ArcFace-style) contrastive loss of prompt embeddings to prototypes.

Each prompt embedding should be closer in angle to its own class prototype than to any
other by a margin m; logits are scaled by alpha. This keeps the prototypes of different
defect kinds apart (no collapse), which the relevance maps of PQS rely on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cpe_loss(emb: torch.Tensor, protos: torch.Tensor, cls: torch.Tensor,
             alpha: float = 16.0, margin: float = 0.3) -> torch.Tensor:
    """emb (P, D) unit, protos (C, D) unit, cls (P,) int64 -> scalar loss.

    Logit of the true class: alpha * cos(theta + m); of the others: alpha * cos(theta).
    """
    cos = (emb @ protos.t()).clamp(-1 + 1e-6, 1 - 1e-6)  # (P, C)
    theta = torch.acos(cos)
    target = F.one_hot(cls, protos.shape[0]).bool()
    # past pi - m, cos(theta + m) would rise again: fall back to the CosFace-style linear term
    with_margin = torch.where(theta + margin < torch.pi, torch.cos(theta + margin),
                              cos - margin * torch.sin(torch.tensor(margin)))
    logits = alpha * torch.where(target, with_margin, cos)
    return F.cross_entropy(logits, cls)
