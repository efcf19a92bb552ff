"""The open-set visual-prompt detector in torch: tokens, SSPE, PQS head.

Three parts, exported as three ONNX graphs (`inspector.training.export`):

* `TokenEncoder`: EfficientNet-Lite0 (frozen, ImageNet) stride-8 and upsampled stride-16
  features fused into D-dim dense visual tokens at stride 8.
* `PromptEncoder` (SSPE): a spatial branch (masked average pooling of the tokens over the
  example's mask or box) and a frequency branch (radial spectrum of the example's box from
  the spectral engine -> small MLP, the "radial frequency encoder"), fused by two
  alignment MLPs: e = f_align(z_spatial) + v_align(z_freq), L2-normalised. A class
  prototype is the normalised mean of its prompts' embeddings (done outside the graph).
* `QueryHead` (PQS): cosine relevance of every token to every prototype; a light
  prototype-conditioned conv map; top-K tokens per prototype become queries (hard top-K
  here; Gumbel-softmax straight-through in training, `inspector.training.pqs`), and each query
  predicts a box (distances from its token centre), a score and a mask (dynamic kernel
  dotted with a stride-4 mask feature map).

Kept small (D=64) so that the heads train on CPU on cached backbone features.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inspector.inference.detectors.prompt_inputs import RINGS, STRIDE


@dataclass
class NetConfig:
    """Sizes and options of the net; saved in the manifest so a model can be rebuilt."""

    dim: int = 64  # token dimension D
    head_dim: int = 48  # conditioned head map channels
    mask_dim: int = 16  # dynamic mask kernel size
    freq_dim: int = 32  # radial frequency encoder width
    rings: int = RINGS
    top_k: int = 20  # queries per prototype at inference
    box_scale: float = 4.0 * STRIDE  # box distances are exp(pred) * this
    # class-agnostic "defect here" logit per token, added (as log-probability) to the
    # relevance: a prior learned across domains that does not depend on the prompts,
    # so query selection still finds defects where prototype matching alone transfers
    # badly (open set). Off in models trained before it (their manifests lack the key).
    objectness: bool = False
    # what the conditioned head sees: "tokens" (the token features gated by the
    # prototype; learns the training domains' look) or "similarity" (only cosine maps:
    # prompt similarity and the token's contrast to its neighbourhood and its image, so
    # the box, score and mask heads learn the shape of a match, not a texture)
    head_input: str = "tokens"
    # boxes scale from the class's prompt box size (the head graph's third input,
    # `sizes`: log width and height of the examples) instead of a fixed box_scale: an
    # unseen product's defects are about as big as the operator's examples, whereas a
    # size learned on the training domains does not carry over
    size_prior: bool = False
    # Both off in every shipped model: measured leave-one-domain-out together, they did
    # not raise open-set AP50 and cost in-domain AP50 (docs/prompt-matching.md).

    def to_dict(self) -> dict:
        return asdict(self)


def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))


class TokenFusion(nn.Module):
    """(stride-8 features, stride-16 features) -> tokens (B, D, H/8, W/8)."""

    def __init__(self, cfg: NetConfig, c8: int = 40, c16: int = 112) -> None:
        super().__init__()
        d = cfg.dim
        self.l8 = nn.Conv2d(c8, d, 1)
        self.l16 = nn.Conv2d(c16, d, 1)
        self.block = nn.Sequential(
            nn.ReLU(), nn.Conv2d(d, d, 3, padding=1), nn.ReLU(),
            nn.Conv2d(d, d, 3, padding=2, dilation=2),
        )

    def forward(self, f8: torch.Tensor, f16: torch.Tensor) -> torch.Tensor:
        x = self.l8(f8) + F.interpolate(self.l16(f16), scale_factor=2.0, mode="bilinear",
                                        align_corners=False)
        return x + self.block(x)


class TokenEncoder(nn.Module):
    """Image (B, 1, H, W) in [0, 1], H and W multiples of 16 -> tokens (B, D, H/8, W/8)."""

    def __init__(self, backbone: nn.Module, fusion: TokenFusion) -> None:
        super().__init__()
        self.backbone = backbone
        self.fusion = fusion

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        f8, f16 = self.backbone(image)
        return self.fusion(f8, f16)


class PromptEncoder(nn.Module):
    """SSPE: tokens (P, D, h, w), pooling weights (P, h, w), spectra (P, R) -> (P, D) unit."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.freq = nn.Sequential(nn.Linear(cfg.rings, cfg.freq_dim), nn.ReLU(),
                                  nn.Linear(cfg.freq_dim, cfg.freq_dim), nn.ReLU())
        self.f_align = _mlp(2 * d, d, d)
        self.v_align = _mlp(cfg.freq_dim, d, d)

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor,
                spectrum: torch.Tensor) -> torch.Tensor:
        w = weights.unsqueeze(1)
        inside = (tokens * w).sum((2, 3)) / w.sum((2, 3)).clamp_min(1e-6)
        # the ring around the example: what the defect differs from
        ring = F.max_pool2d(w, 5, stride=1, padding=2) - w
        ring = ring.clamp_min(0)
        around = (tokens * ring).sum((2, 3)) / ring.sum((2, 3)).clamp_min(1e-6)
        z_spatial = torch.cat([inside, inside - around], dim=1)
        e = self.f_align(z_spatial) + self.v_align(self.freq(spectrum))
        return F.normalize(e, dim=1)


class QueryHead(nn.Module):
    """Prototype-conditioned dense maps and per-query predictions (PQS)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        d, hd = cfg.dim, cfg.head_dim
        self.cfg = cfg
        if cfg.head_input not in ("tokens", "similarity"):
            raise ValueError(f"net_config.head_input: 'tokens' or 'similarity', "
                             f"got {cfg.head_input!r}")
        self.similar = cfg.head_input == "similarity"
        self.rel_proj = nn.Conv2d(d, d, 1)
        self.rel_scale = nn.Parameter(torch.tensor(10.0))
        self.rel_bias = nn.Parameter(torch.tensor(-5.0))
        if self.similar:
            # cosine maps only; wide dilations so a blob's extent is visible to the box head
            self.cond = nn.Sequential(
                nn.Conv2d(SIM_CHANNELS, hd, 3, padding=1), nn.ReLU(),
                nn.Conv2d(hd, hd, 3, padding=2, dilation=2), nn.ReLU(),
                nn.Conv2d(hd, hd, 3, padding=4, dilation=4), nn.ReLU(),
                nn.Conv2d(hd, hd, 3, padding=8, dilation=8), nn.ReLU(),
            )
            self.rel_refine = nn.Conv2d(hd, 1, 1)  # learned correction of the relevance
            nn.init.zeros_(self.rel_refine.weight)
            nn.init.zeros_(self.rel_refine.bias)
            mask_in = hd + SIM_CHANNELS
        else:
            self.tok_in = nn.Conv2d(d, hd, 1)
            self.proto_in = nn.Linear(d, hd)
            self.proto_gate = nn.Linear(d, hd)
            self.cond = nn.Sequential(
                nn.Conv2d(hd + 1, hd, 3, padding=1), nn.ReLU(),
                nn.Conv2d(hd, hd, 3, padding=2, dilation=2), nn.ReLU(),
            )
            mask_in = hd + d
        self.score = nn.Linear(hd, 1)
        self.box = nn.Linear(hd, 4)
        self.kernel = nn.Linear(hd, cfg.mask_dim)
        self.mask_feat = nn.Sequential(nn.Conv2d(mask_in, 32, 1), nn.ReLU(),
                                       nn.Conv2d(32, cfg.mask_dim, 3, padding=1))
        self.mask_bias = nn.Parameter(torch.tensor(0.0))
        nn.init.constant_(self.score.bias, -4.6)  # prior 0.01: most tokens are background
        if cfg.objectness:
            # on a similarity head the prior sees only the contrast maps (class-agnostic)
            obj_in = SIM_CHANNELS - 1 if self.similar else d
            self.obj = nn.Sequential(nn.Conv2d(obj_in, 32, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(32, 1, 1))
            nn.init.constant_(self.obj[2].bias, -2.0)
            self.obj_gain = nn.Parameter(torch.tensor(1.0))

    def objectness(self, tokens: torch.Tensor) -> torch.Tensor:
        """Class-agnostic defect logits (B, N) of tokens (B, D, h, w)."""
        x = contrast_maps(tokens) if self.similar else tokens
        return self.obj(x).flatten(1)

    def cosine(self, tokens: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
        """Cosine (C, N) of projected tokens (C, D, h, w) to unit prototypes (C, D)."""
        t = F.normalize(self.rel_proj(tokens).flatten(2), dim=1)  # (C, D, N)
        return torch.einsum("cdn,cd->cn", t, protos)

    def relevance(self, tokens: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
        """Relevance logits (C, N) of tokens (C, D, h, w) (one image, repeated) to (C, D)."""
        if self.similar:  # refined by the similarity maps
            return self._dense_similarity(tokens, protos)[0]
        rel = self.cosine(tokens, protos) * self.rel_scale + self.rel_bias
        if self.cfg.objectness:
            rel = rel + self.obj_gain * F.logsigmoid(self.objectness(tokens))
        return rel

    def dense(self, tokens: torch.Tensor, protos: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens (C, D, h, w) and prototypes (C, D) -> relevance logits (C, N),
        conditioned map (C, hd, h, w), mask features (C, M, 2h, 2w)."""
        if self.similar:
            return self._dense_similarity(tokens, protos)
        rel = self.relevance(tokens, protos)
        c, _, h, w = tokens.shape
        gate = torch.sigmoid(self.proto_gate(protos))[:, :, None, None]
        x = torch.relu(self.tok_in(tokens) * gate + self.proto_in(protos)[:, :, None, None])
        x = self.cond(torch.cat([x, rel.view(c, 1, h, w)], dim=1))
        m = self.mask_feat(torch.cat([x, tokens], dim=1))
        m = F.interpolate(m, scale_factor=2.0, mode="bilinear", align_corners=False)
        return rel, x, m

    def _dense_similarity(self, tokens: torch.Tensor, protos: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`dense` of a similarity head: the maps see cosines, never the tokens."""
        c, _, h, w = tokens.shape
        cos = self.cosine(tokens, protos).view(c, 1, h, w)
        contrast = contrast_maps(tokens)
        sims = torch.cat([cos, contrast], dim=1)
        x = self.cond(sims)
        rel = cos.flatten(1) * self.rel_scale + self.rel_bias + self.rel_refine(x).flatten(1)
        if self.cfg.objectness:
            rel = rel + self.obj_gain * F.logsigmoid(self.obj(contrast).flatten(1))
        m = self.mask_feat(torch.cat([x, sims], dim=1))
        m = F.interpolate(m, scale_factor=2.0, mode="bilinear", align_corners=False)
        return rel, x, m

    def predict(self, q: torch.Tensor, prior: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query features (..., hd) -> score logits (...), box distances (..., 4) in
        pixels (left, top, right, bottom), mask kernels (..., M). `prior` (..., 4), the
        log half-size of the class's examples, replaces the fixed box scale."""
        raw = self.box(q).clamp(-6, 4)
        dist = torch.exp(raw) * self.cfg.box_scale if prior is None else torch.exp(raw + prior)
        return self.score(q).squeeze(-1), dist, self.kernel(q)

    def forward(self, tokens: torch.Tensor, protos: torch.Tensor,
                sizes: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inference (hard top-K): tokens (1, D, h, w), prototypes (C, D) unit, and with a
        size prior `sizes` (C, 2) (`size_prior`) -> boxes (C, K, 4) x1 y1 x2 y2 in input
        pixels, scores (C, K) in [0, 1], mask logits (C, K, 2h, 2w) at stride 4."""
        c = protos.shape[0]
        t = tokens.expand(c, -1, -1, -1)
        _, _, h, w = t.shape
        rel, x, m = self.dense(t, protos)
        k = self.cfg.top_k
        _, idx = torch.topk(rel, k, dim=1)  # (C, K)
        xf = x.flatten(2)  # (C, hd, N)
        q = torch.gather(xf, 2, idx.unsqueeze(1).expand(-1, xf.shape[1], -1)).transpose(1, 2)
        prior = None if sizes is None else box_prior(sizes)[:, None, :]
        score, dist, kern = self.predict(q, prior)
        cx = ((idx % w).float() + 0.5) * STRIDE
        cy = (torch.div(idx, w, rounding_mode="floor").float() + 0.5) * STRIDE
        boxes = torch.stack([cx - dist[..., 0], cy - dist[..., 1],
                             cx + dist[..., 2], cy + dist[..., 3]], dim=-1)
        masks = torch.einsum("ckm,cmhw->ckhw", kern, m) + self.mask_bias
        return boxes, torch.sigmoid(score), masks


def box_prior(sizes: torch.Tensor) -> torch.Tensor:
    """(C, 2) log (width, height) of a class's examples -> (C, 4) log half-size for the
    left, top, right and bottom box distances."""
    half = sizes - math.log(2.0)
    return torch.cat([half, half], dim=1)


def prompt_sizes(boxes_wh: torch.Tensor, cls: torch.Tensor, n_cls: int) -> torch.Tensor:
    """(P, 2) example box widths and heights in input pixels -> (C, 2) mean log size."""
    onehot = F.one_hot(cls, n_cls).float()  # (P, C)
    logs = torch.log(boxes_wh.clamp_min(1.0))
    return (onehot.t() @ logs) / onehot.sum(0).clamp_min(1.0)[:, None]


SIM_CHANNELS = 5  # prompt cosine + four contrast maps (`contrast_maps`)


def contrast_maps(tokens: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) -> (B, 4, h, w): how unlike its 3x3 and 9x9 neighbourhood and its
    image's mean a token is (1 - cosine), and its norm over the image's mean norm.

    Domain-free cues: a defect differs from the surface around it whatever the surface.
    """
    t = F.normalize(tokens, dim=1)
    near = F.normalize(F.avg_pool2d(tokens, 3, stride=1, padding=1,
                                    count_include_pad=False), dim=1)
    far = F.normalize(F.avg_pool2d(tokens, 9, stride=1, padding=4,
                                   count_include_pad=False), dim=1)
    whole = F.normalize(tokens.mean((2, 3), keepdim=True), dim=1)
    norm = tokens.norm(dim=1, keepdim=True)
    rel_norm = norm / norm.mean((2, 3), keepdim=True).clamp_min(1e-6)
    return torch.cat([1 - (t * near).sum(1, keepdim=True), 1 - (t * far).sum(1, keepdim=True),
                      1 - (t * whole).sum(1, keepdim=True), rel_norm], dim=1)


class PromptDetectorNet(nn.Module):
    """The three parts together, with the fusion usable on cached backbone features."""

    def __init__(self, cfg: NetConfig | None = None, pretrained: bool = True) -> None:
        super().__init__()
        from inspector.training.backbone import Lite0Features

        self.cfg = cfg or NetConfig()
        self.backbone = Lite0Features(pretrained=pretrained).eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.fusion = TokenFusion(self.cfg)
        self.prompt = PromptEncoder(self.cfg)
        self.head = QueryHead(self.cfg)

    def encoder(self) -> TokenEncoder:
        return TokenEncoder(self.backbone, self.fusion)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights training changes (the backbone is the packaged ImageNet one)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}


def prototypes(emb: torch.Tensor, cls: torch.Tensor, n_cls: int) -> torch.Tensor:
    """Unit class prototypes (C, D) = normalised mean of each class's unit embeddings."""
    onehot = F.one_hot(cls, n_cls).float()  # (P, C)
    return F.normalize(onehot.t() @ emb, dim=1)
