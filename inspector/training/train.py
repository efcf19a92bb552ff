"""Episodic training of the prompt detector's heads on cached backbone features.

Per episode: tokens for every image (fusion on cached Lite0 features), SSPE embeddings
of the prompts, prototypes, then for every (query image, class) pair the PQS head's dense
maps. Losses: relevance (focal), dense score (focal), Gumbel top-K query scores (BCE,
straight-through selection), boxes (GIoU) and masks (BCE + dice, inside the box) on
positive tokens, and the CPE angular-margin loss on the prompt embeddings. Writes the
trainable weights (`weights.pt`, a plain state dict) and a manifest JSON.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from inspector.core.hashing import file_sha256 as sha256_file
from inspector.inference.detectors.prompt_inputs import STRIDE
from inspector.training.cpe import cpe_loss
from inspector.training.episodes import Episode, EpisodeSampler, FeatureCache
from inspector.training.pqs import gumbel_topk
from inspector.training.prompt_net import (
    NetConfig,
    PromptDetectorNet,
    box_prior,
    prompt_sizes,
    prototypes,
)


@dataclass
class TrainConfig:
    """Hyper-parameters and budget of one training run."""

    steps: int = 4000
    max_minutes: float = 40.0
    lr: float = 2e-3
    warmup: int = 100  # steps of linear learning-rate warm-up
    weight_decay: float = 1e-4
    seed: int = 0
    size: int = 320
    train_k: int = 8  # Gumbel top-K queries per (image, class) in training
    tau: float = 1.0
    cpe_alpha: float = 16.0
    cpe_margin: float = 0.3
    val_episodes: int = 60
    threads: int = 2
    source_weights: dict[str, float] = field(default_factory=dict)
    left_out_every: int = 2000  # steps between logged left-out-domain checks
    obj_weight: float = 1.0  # class-agnostic objectness loss (nets with objectness only)


def focal(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25,
          gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss, summed (callers divide by the number of positives)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    w = alpha * target + (1 - alpha) * (1 - target)
    return (w * ce * (1 - pt) ** gamma).sum()


def giou_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Boxes (n, 4) x1 y1 x2 y2 -> mean 1 - GIoU."""
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp_min(0).prod(1)
    area_a = (a[:, 2:] - a[:, :2]).clamp_min(0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp_min(0).prod(1)
    union = area_a + area_b - inter
    clt, crb = torch.min(a[:, :2], b[:, :2]), torch.max(a[:, 2:], b[:, 2:])
    hull = (crb - clt).clamp_min(0).prod(1)
    iou = inter / union.clamp_min(1e-6)
    return (1 - iou + (hull - union) / hull.clamp_min(1e-6)).mean()


@dataclass
class Targets:
    """Per (query image, class) and token: positive or not, assigned box and instance."""

    pos: torch.Tensor  # (QC, N) 0/1
    box: torch.Tensor  # (QC, N, 4) x1 y1 x2 y2 of the assigned instance
    inst: torch.Tensor  # (QC, N) assigned instance index or -1


def build_targets(cache: FeatureCache, sampler: EpisodeSampler, ep: Episode,
                  n_tok: int) -> Targets:
    """Per-token targets of an episode's (query, class) pairs.

    A token >= 30 % covered by an instance's mask or box is positive (and so is each
    instance's best-covered token); where instances overlap, the smaller one is assigned.
    """
    a = cache.a
    qc = len(ep.query_img) * len(ep.classes)
    pos = np.zeros((qc, n_tok), np.float32)
    box = np.zeros((qc, n_tok, 4), np.float32)
    inst = np.full((qc, n_tok), -1, np.int64)
    row = 0
    for q in ep.query_img:
        img = int(ep.images[q])
        for k in ep.classes:
            ids = sampler.by_class[int(k)].get(img, [])
            area = np.full(n_tok, np.inf)
            for i in ids:
                w = a["inst_w8"][i].astype(np.float32).ravel()
                on = w >= 0.3
                on[int(np.argmax(w))] = True
                x, y, bw, bh = a["inst_box"][i]
                better = on & (bw * bh < area)
                area[better] = bw * bh
                inst[row, better] = i
                box[row, better] = (x, y, x + bw, y + bh)
                pos[row, on] = 1.0
            row += 1
    return Targets(torch.from_numpy(pos), torch.from_numpy(box), torch.from_numpy(inst))


def any_defect_targets(cache: FeatureCache, ep: Episode, n_tok: int) -> torch.Tensor:
    """(Q, N) 1 on the tokens of any instance (any class) of each query image."""
    a = cache.a
    out = np.zeros((len(ep.query_img), n_tok), np.float32)
    for row, q in enumerate(ep.query_img):
        for i in np.nonzero(a["inst_image"] == int(ep.images[q]))[0]:
            w = a["inst_w8"][i].astype(np.float32).ravel()
            on = w >= 0.3
            on[int(np.argmax(w))] = True
            out[row, on] = 1.0
    return torch.from_numpy(out)


def token_centres(h: int, w: int) -> torch.Tensor:
    """Input-pixel (x, y) centres of an h x w token grid, row-major."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([(xs.flatten() + 0.5) * STRIDE, (ys.flatten() + 0.5) * STRIDE], 1)


def episode_loss(net: PromptDetectorNet, cache: FeatureCache, sampler: EpisodeSampler,
                 ep: Episode, cfg: TrainConfig, gen: torch.Generator | None,
                 train: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """The episode's total loss and its terms, plus the top-1 hit rate when not training."""
    a = cache.a
    f8 = torch.from_numpy(a["f8"][ep.images].astype(np.float32))
    f16 = torch.from_numpy(a["f16"][ep.images].astype(np.float32))
    tokens = net.fusion(f8, f16)  # (B, D, h, w)
    _, d, h, w = tokens.shape
    pos_of = {int(img): j for j, img in enumerate(ep.images)}
    p_tok = tokens[[pos_of[int(a["inst_image"][i])] for i in ep.prompt_inst]]
    p_w = torch.from_numpy(a["inst_w8"][ep.prompt_inst].astype(np.float32))
    p_spec = torch.from_numpy(a["inst_spec"][ep.prompt_inst])
    emb = net.prompt(p_tok, p_w, p_spec)
    p_cls = torch.from_numpy(ep.prompt_cls)
    n_cls = len(ep.classes)
    protos = prototypes(emb, p_cls, n_cls)
    logs: dict[str, float] = {}
    loss = torch.zeros(())
    if n_cls > 1:
        l_cpe = cpe_loss(emb, protos, p_cls, cfg.cpe_alpha, cfg.cpe_margin)
        loss = loss + 0.5 * l_cpe
        logs["cpe"] = float(l_cpe.detach())

    nq = len(ep.query_img)
    q_tok = tokens[ep.query_img].repeat_interleave(n_cls, 0)  # (Q*C, D, h, w)
    q_pro = protos.repeat(nq, 1)
    head = net.head
    rel, x, m = head.dense(q_tok, q_pro)
    n = h * w
    tg = build_targets(cache, sampler, ep, n)
    npos = tg.pos.sum().clamp_min(1.0)
    l_rel = focal(rel, tg.pos) / npos
    xf = x.flatten(2).transpose(1, 2)  # (QC, N, hd)
    prior = None
    if head.cfg.size_prior:  # each row's class: rows are query-major, classes repeated
        wh = torch.from_numpy(a["inst_box"][ep.prompt_inst][:, 2:].astype(np.float32))
        prior = box_prior(prompt_sizes(wh, p_cls, n_cls)).repeat(nq, 1)[:, None, :]
    score, dist, kern = head.predict(xf, prior)
    l_score = focal(score, tg.pos) / npos
    # PQS: Gumbel top-K picks (straight-through) become the queries
    sel = gumbel_topk(rel, cfg.train_k, cfg.tau, gen, noise=train)  # (QC, K, N)
    q_score = head.score(sel @ xf).squeeze(-1)
    q_target = (sel.detach() @ tg.pos.unsqueeze(-1)).squeeze(-1)
    l_query = F.binary_cross_entropy_with_logits(q_score, q_target)
    loss = loss + l_rel + l_score + 0.5 * l_query
    logs.update(rel=l_rel.item(), score=l_score.item(), query=l_query.item())
    if head.cfg.objectness:  # every instance of the query image, whatever its class
        any_pos = any_defect_targets(cache, ep, n)
        l_obj = focal(head.objectness(tokens[ep.query_img]), any_pos) / any_pos.sum().clamp_min(1)
        loss = loss + cfg.obj_weight * l_obj
        logs["obj"] = l_obj.item()

    pr, pt = torch.nonzero(tg.inst >= 0, as_tuple=True)
    if len(pr):
        c = token_centres(h, w)[pt]
        dd = dist[pr, pt]
        pred = torch.cat([c - dd[:, :2], c + dd[:, 2:]], 1)
        l_box = giou_loss(pred, tg.box[pr, pt])
        loss = loss + 2.0 * l_box
        logs["box"] = l_box.item()
        ids = tg.inst[pr, pt]
        has = torch.from_numpy(a["inst_has_mask"][ids.numpy()])
        if has.any():
            g = torch.Generator().manual_seed(int(ids.sum()))
            keep = torch.nonzero(has).squeeze(1)
            keep = keep[torch.randperm(len(keep), generator=g)[:24]]
            mk = torch.einsum("pm,pmhw->phw", kern[pr[keep], pt[keep]], m[pr[keep]])
            mk = mk + head.mask_bias
            tgt = torch.from_numpy(a["inst_cov4"][ids[keep].numpy()].astype(np.float32))
            region = box_region(tg.box[pr[keep], pt[keep]], tgt.shape[-1])
            bce = F.binary_cross_entropy_with_logits(mk, tgt, reduction="none")
            l_bce = (bce * region).sum() / region.sum().clamp_min(1)
            p = torch.sigmoid(mk) * region
            dice = 1 - (2 * (p * tgt).sum((1, 2)) + 1) / (p.sum((1, 2)) + tgt.sum((1, 2)) + 1)
            l_mask = l_bce + dice.mean()
            loss = loss + l_mask
            logs["mask"] = l_mask.item()
    if not train:  # top-1 hit: does the best-scoring hard top-K query lie on the defect?
        with torch.no_grad():
            idx = torch.topk(rel, head.cfg.top_k, dim=1).indices
            best = idx.gather(1, score.gather(1, idx).argmax(1, keepdim=True))
            has_pos = tg.pos.sum(1) > 0
            hit = tg.pos.gather(1, best).squeeze(1)
            logs["hit"] = float(hit[has_pos].mean()) if has_pos.any() else float("nan")
            logs["box_hit"] = _box_recall(idx, dist, tg, a, h, w)
    logs["loss"] = float(loss.detach())
    return loss, logs


def _box_recall(idx: torch.Tensor, dist: torch.Tensor, tg: Targets, a: dict,
                h: int, w: int) -> float:
    """Share of instances that one of the top-K queries of their (image, class) pair
    boxes at IoU >= 0.5: whether query selection and boxes localise at all."""
    from inspector.core.coco import iou_xywh

    centres = token_centres(h, w)
    found, total = 0, 0
    for row in range(idx.shape[0]):
        ids = torch.unique(tg.inst[row][tg.inst[row] >= 0]).numpy()
        if not len(ids):
            continue
        k = idx[row]
        d = dist[row, k]
        xy = centres[k] - d[:, :2]
        pred = torch.cat([xy, d[:, :2] + d[:, 2:]], 1).numpy()  # x, y, w, h
        found += int((iou_xywh(pred, a["inst_box"][ids]).max(0) >= 0.5).sum())
        total += len(ids)
    return found / total if total else float("nan")


def box_region(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(n, 4) input-pixel boxes -> (n, size, size) 0/1 at stride 4, grown by 25 % + 8 px."""
    cell = STRIDE / 2
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    hw = (boxes[:, 2] - boxes[:, 0]) * 0.625 + 8
    hh = (boxes[:, 3] - boxes[:, 1]) * 0.625 + 8
    g = (torch.arange(size) + 0.5) * cell
    inx = (g[None] >= (cx - hw)[:, None]) & (g[None] <= (cx + hw)[:, None])
    iny = (g[None] >= (cy - hh)[:, None]) & (g[None] <= (cy + hh)[:, None])
    return (iny[:, :, None] & inx[:, None, :]).float()


def evaluate(net: PromptDetectorNet, cache: FeatureCache, cfg: TrainConfig,
             n: int, seed: int, weights: dict[str, float] | None = None) -> dict[str, float]:
    """Mean losses, top-1 hit rate and top-K box recall over `n` fixed held-out-seed
    episodes of the training sources (or of the sources `weights` names)."""
    sampler = EpisodeSampler(cache, seed, source_weights=(
        cfg.source_weights if weights is None else weights))
    net.eval()
    acc: dict[str, list[float]] = {}
    with torch.no_grad():
        for _ in range(n):
            _, logs = episode_loss(net, cache, sampler, sampler.sample(), cfg, None, train=False)
            for k, v in logs.items():
                if not math.isnan(v):
                    acc.setdefault(k, []).append(v)
    net.train()
    return {k: round(float(np.mean(v)), 4) for k, v in acc.items()}


def train(cache: FeatureCache, cfg: TrainConfig, net_cfg: NetConfig | None = None,
          progress: bool = True, net: PromptDetectorNet | None = None
          ) -> tuple[PromptDetectorNet, dict]:
    """Train the heads; returns the net and a record (metrics before/after, wall time)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    net = net or PromptDetectorNet(net_cfg or NetConfig())
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = EpisodeSampler(cache, cfg.seed, source_weights=cfg.source_weights)
    gen = torch.Generator().manual_seed(cfg.seed)
    val_seed = cfg.seed + 10_000
    before = evaluate(net, cache, cfg, cfg.val_episodes, val_seed)
    t0 = time.monotonic()
    net.train()
    net.backbone.eval()
    left_out = heldout_weights(cache, cfg)
    bar = tqdm(range(cfg.steps), desc="train", unit="ep", disable=not progress)
    ema: dict[str, float] = {}
    done = 0
    for step in bar:
        loss, logs = episode_loss(net, cache, sampler, sampler.sample(), cfg, gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        # cosine schedule over whichever budget (steps or minutes) runs out first
        frac = max(step / cfg.steps, (time.monotonic() - t0) / 60 / cfg.max_minutes)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1)) * 0.5 * (1 + math.cos(
                math.pi * min(frac, 1.0)))
        opt.step()
        done = step + 1
        for k, v in logs.items():
            ema[k] = 0.98 * ema.get(k, v) + 0.02 * v
        if step % 20 == 0:
            bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()})
        if left_out and step and step % cfg.left_out_every == 0:  # open-set proxy, logged
            seen = evaluate(net, cache, cfg, cfg.val_episodes // 2, val_seed, left_out)
            bar.write(f"step {step}: left-out {record_keys(seen)}")
        if frac >= 1.0:
            break
    wall = time.monotonic() - t0
    after = evaluate(net, cache, cfg, cfg.val_episodes, val_seed)
    record = {"steps_done": done, "train_wall_s": round(wall, 1),
              "val_before": before, "val_after": after}
    if left_out:  # the left-out domains' train split: a proxy of the open-set case
        record["val_left_out"] = evaluate(net, cache, cfg, cfg.val_episodes, val_seed,
                                          left_out)
        record["val_left_out_sources"] = sorted(k for k, v in left_out.items() if v > 0)
    net.eval()
    return net, record


def record_keys(logs: dict[str, float]) -> str:
    """The figures worth a log line: hit rates and the total loss."""
    return " ".join(f"{k}={logs[k]:.3f}" for k in ("hit", "box_hit", "loss") if k in logs)


def heldout_weights(cache: FeatureCache, cfg: TrainConfig) -> dict[str, float]:
    """Sampling weights that draw only the sources training left out ({} if none)."""
    out = {s for s, v in cfg.source_weights.items() if v == 0 and s in cache.sources}
    return {s: (1.0 if s in out else 0.0) for s in cache.sources} if out else {}




def data_summary(cache: FeatureCache, sources: list) -> dict:
    """What the manifest says about the training data."""
    used = {s.name for s in sources}
    keep = [cache.classes[k] for k in range(len(cache.classes))
            if cache.classes[k].split("/")[0] in used]
    return {"sources": [s.__dict__ for s in sources], "split": "train only", "classes": keep}


def save(net: PromptDetectorNet, out: Path, record: dict, cfg: TrainConfig,
         data: dict) -> Path:
    """weights.pt (trainable state dict) + manifest.json in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.trainable_state(), out / "weights.pt")
    manifest = {
        "model": "inspector prompt detector (SSPE + CPE + PQS), EfficientNet-Lite0 backbone",
        "net_config": net.cfg.to_dict(),
        "train_config": asdict(cfg),
        "data": data,
        "seeds": {"train": cfg.seed, "validation_episodes": cfg.seed + 10_000},
        "metrics": record,
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine()},
        "files": {"weights.pt": sha256_file(out / "weights.pt")},
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return path


def load_net(folder: Path) -> PromptDetectorNet:
    """The net of a model folder (manifest's config, weights loaded with weights_only)."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    net = PromptDetectorNet(NetConfig(**manifest["net_config"]))
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("backbone.")] + list(unexpected)
    if bad:
        raise ValueError(f"{folder / 'weights.pt'}: weights do not fit the net: {bad[:5]}")
    return net.eval()
