"""Enrolment-time adaptation: specialise the prompt detector to one recipe (torch).

Why: heads trained on other domains localise badly on a product they never saw (open
set). A recipe holds what we need to adapt them: its prompt examples (image, box, mask
where given) and its good parts. `synthesize` pastes the examples' defects, jittered in
pose (flip, quarter turns), scale and contrast, onto good parts (or, without good parts,
onto the prompt images with their examples painted out) to make a small training set,
with the prompt images themselves and some plain good parts; `adapt_net` fine-tunes
the prompt encoder and the PQS head on it with the training losses
(`inspector.training.train.episode_loss`) while the backbone and the token fusion stay
frozen, so the encoder graph and any cached tokens stay valid and only `prompt.onnx` and
`head.onnx` change. `adapt_model` does all of it for a model folder and
writes a complete adapted model folder, content-addressed by the model's graphs, the
recipe's examples and good parts and the settings, so the same recipe is adapted once.

Bounded (`AdaptConfig.steps`, with `max_seconds` as a safety cap) and deterministic for
a seed and a thread count while the cap is not hit (an adaptation that hit it is done
again at the next enrolment, see `adapt_model`). Needs the train extra (torch); the
detector uses it only when asked to (`detector.params.adapt`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from inspector.inference.detectors.base import PromptExample
from inspector.inference.detectors.prompt_inputs import resize_mask, resize_square, scale_box
from inspector.training.episodes import Instance, Sample

ADAPT_VERSION = 2  # /2: tokens from the encoder graph (ONNX Runtime)

log = logging.getLogger(__name__)


@dataclass
class AdaptConfig:
    """Settings of one adaptation: synthetic image count, fine-tuning steps and time cap."""

    seed: int = 0
    size: int = 320  # the detector's input side
    images: int = 160  # synthetic training images (pasted defects)
    steps: int = 1500  # fine-tuning episodes
    max_seconds: float = 150.0  # safety cap on the fine-tuning loop (then it stops early)
    lr: float = 2e-3
    threads: int = 2
    negatives: int = 8  # good parts kept as they are (defect-free queries)
    max_classes: int = 3  # classes per fine-tuning episode


@dataclass
class _Piece:
    """One prompt example in input space: the patch around it and its alpha."""

    cls: str
    patch: np.ndarray  # float32 (h, w) pixels around the defect
    alpha: np.ndarray  # float32 (h, w) in [0, 1]: where the defect is
    has_mask: bool


def _pieces(prompts: list[PromptExample], size: int) -> tuple[list[_Piece], list[Sample]]:
    """Patches of every example, and each prompt image (square) with its examples."""
    pieces: list[_Piece] = []
    by_image: dict[int, Sample] = {}
    for p in prompts:
        sq = resize_square(p.image, size)
        x, y, w, h = scale_box(p.bbox, p.image.shape[:2], size)
        m = None if p.mask is None else resize_mask(p.mask, size) >= 0.5
        if id(p.image) not in by_image:
            by_image[id(p.image)] = Sample(sq, [])
        by_image[id(p.image)].instances.append(
            Instance(p.cls, (x, y, max(w, 1.0), max(h, 1.0)), m))
        g = max(4.0, 0.25 * max(w, h))  # context around the defect for the blend
        x0, y0 = int(max(0, np.floor(x - g))), int(max(0, np.floor(y - g)))
        x1, y1 = int(min(size, np.ceil(x + w + g))), int(min(size, np.ceil(y + h + g)))
        patch = sq[y0:y1, x0:x1].astype(np.float32)
        if m is not None and m[y0:y1, x0:x1].any():
            alpha = m[y0:y1, x0:x1].astype(np.float32)
        else:
            alpha = np.zeros_like(patch)
            alpha[int(y - y0):int(np.ceil(y + h - y0)), int(x - x0):int(np.ceil(x + w - x0))] = 1
        alpha = cv2.GaussianBlur(alpha, (0, 0), 1.0)
        if patch.size and alpha.max() > 0:
            pieces.append(_Piece(p.cls, patch, alpha / alpha.max(), m is not None))
    return pieces, list(by_image.values())


def _jitter(piece: _Piece, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pose (flips, quarter turns), scale and contrast jitter of one patch."""
    patch, alpha = piece.patch, piece.alpha
    if rng.random() < 0.5:
        patch, alpha = patch[:, ::-1], alpha[:, ::-1]
    if rng.random() < 0.5:
        patch, alpha = patch[::-1], alpha[::-1]
    k = int(rng.integers(4))
    patch, alpha = np.rot90(patch, k), np.rot90(alpha, k)
    s = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    s = min(s, 0.6 * size / max(patch.shape))
    h, w = max(2, round(patch.shape[0] * s)), max(2, round(patch.shape[1] * s))
    patch = cv2.resize(np.ascontiguousarray(patch), (w, h), interpolation=cv2.INTER_LINEAR)
    alpha = cv2.resize(np.ascontiguousarray(alpha), (w, h), interpolation=cv2.INTER_LINEAR)
    ring = alpha < 0.1
    base = float(patch[ring].mean()) if ring.any() else float(patch.mean())
    gain = float(rng.uniform(0.7, 1.3))
    return (patch - base) * gain, alpha  # the defect as a deviation from its surround


def _overlaps(box, boxes, pad: float = 2.0) -> bool:
    x, y, w, h = box
    return any(x < bx + bw + pad and bx < x + w + pad and y < by + bh + pad and by < y + h + pad
               for bx, by, bw, bh in boxes)


def _paste(canvas: np.ndarray, piece: _Piece, rng: np.random.Generator,
           taken: list) -> Instance | None:
    size = canvas.shape[0]
    dev, alpha = _jitter(piece, rng, size)
    h, w = alpha.shape
    for _ in range(10):
        y0, x0 = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        on = alpha >= 0.5
        ys, xs = np.nonzero(on)
        if not len(ys):
            return None
        box = (float(x0 + xs.min()), float(y0 + ys.min()), float(xs.max() - xs.min() + 1),
               float(ys.max() - ys.min() + 1))
        if _overlaps(box, taken):
            continue
        region = canvas[y0:y0 + h, x0:x0 + w]
        canvas[y0:y0 + h, x0:x0 + w] = region + alpha * dev
        taken.append(box)
        mask = None
        if piece.has_mask:
            mask = np.zeros((size, size), bool)
            mask[y0:y0 + h, x0:x0 + w] = on
        return Instance(piece.cls, box, mask)
    return None


def _painted_out(sample: Sample) -> np.ndarray:
    """The image with its labelled examples inpainted (masks, else boxes, grown by 3 px):
    an approximate good part when the recipe has none. Unlabelled defects stay."""
    img = sample.image
    hole = np.zeros(img.shape, np.uint8)
    for ins in sample.instances:
        if ins.mask is not None:
            hole[ins.mask] = 1
        else:
            x, y, w, h = ins.bbox
            hole[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))] = 1
    hole = cv2.dilate(hole, np.ones((7, 7), np.uint8))
    return cv2.inpaint(img, hole, 5, cv2.INPAINT_TELEA)


def synthesize(prompts: list[PromptExample], normals: list[np.ndarray],
               cfg: AdaptConfig) -> list[Sample]:
    """The adaptation set: the prompt images (their examples labelled), `cfg.images`
    good parts with 1..3 pasted, jittered examples each (every example is pasted about
    equally often), and up to `cfg.negatives` good parts as they are. Without good parts,
    the prompt images with their examples painted out stand in for them."""
    rng = np.random.default_rng(cfg.seed)
    pieces, prompt_samples = _pieces(prompts, cfg.size)
    if not pieces:
        raise ValueError("adaptation needs at least one prompt example")
    goods = [resize_square(n, cfg.size) for n in normals]
    if not goods:  # the prompt images with their examples painted out serve as good parts
        goods = [_painted_out(s) for s in prompt_samples]
    out = list(prompt_samples)
    order = rng.permutation(len(pieces))
    nxt = 0
    for i in range(cfg.images):
        canvas = goods[i % len(goods)].astype(np.float32)
        instances: list[Instance] = []
        taken: list = []
        for _ in range(int(rng.integers(1, 4))):
            piece = pieces[int(order[nxt % len(order)])]
            nxt += 1
            got = _paste(canvas, piece, rng, taken)
            if got is not None:
                instances.append(got)
        out.append(Sample(np.clip(canvas, 0, 255).astype(np.uint8), instances))
    out += [Sample(g, []) for g in goods[: cfg.negatives]]
    return out


class _Memory:
    """A training source over samples held in memory (FeatureCache.build reads it)."""

    kind = "memory"

    def __init__(self, name: str, samples: list[Sample]) -> None:
        self.name, self._samples = name, samples

    def samples(self):
        return ((f"{self.name}-{i}", s) for i, s in enumerate(self._samples))

    def count(self) -> int:
        return len(self._samples)


def encoder_tokens(model_dir: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """Input batch (B, 1, H, W) -> tokens (B, D, H/8, W/8) by the model's exported encoder
    graph on ONNX Runtime: the frozen backbone and fusion, many times faster than torch."""
    from inspector.inference.runtimes import open_backend

    encoder = open_backend("onnxruntime", Path(model_dir), None, threads=threads)

    def encode(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([encoder.run("encoder", {"image": x[None]})["tokens"]
                               for x in batch])

    return encode


def adapt_net(net, samples: list[Sample], cfg: AdaptConfig,
              encode: Callable[[np.ndarray], np.ndarray], progress: bool = False) -> dict:
    """Fine-tune `net`'s prompt encoder and head in place on `samples`; returns a record.
    `encode` (`encoder_tokens` of the model) computes the frozen tokens."""
    import torch
    from tqdm import tqdm

    from inspector.training.episodes import EpisodeSampler, FeatureCache
    from inspector.training.train import TrainConfig, episode_loss

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.monotonic()
    cache = FeatureCache.build([_Memory("recipe", samples)], cfg.size, progress=False,
                               encode=encode)
    for p in net.backbone.parameters():
        p.requires_grad_(False)
    for p in net.fusion.parameters():  # tokens (and the encoder graph) stay as they are
        p.requires_grad_(False)
    features_s = time.monotonic() - t0

    class Given(torch.nn.Module):
        """The frozen fusion while adapting: its 'f8' input already holds the tokens."""

        def forward(self, f8: torch.Tensor, f16: torch.Tensor) -> torch.Tensor:
            return f8

    fusion = net.fusion
    net.fusion = Given()
    params = list(net.prompt.parameters()) + list(net.head.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    tcfg = TrainConfig(seed=cfg.seed, size=cfg.size, threads=cfg.threads)
    sampler = EpisodeSampler(cache, cfg.seed, max_classes=cfg.max_classes)
    gen = torch.Generator().manual_seed(cfg.seed)
    net.train()
    net.backbone.eval()
    first = last = None
    done, capped = 0, False
    t1 = time.monotonic()
    bar = tqdm(range(cfg.steps), desc="adapt", unit="ep", disable=not progress)
    for step in bar:
        loss, logs = episode_loss(net, cache, sampler, sampler.sample(), tcfg, gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        for group in opt.param_groups:  # short warm-up, then linear decay
            group["lr"] = cfg.lr * min(1.0, (step + 1) / 10) * (1 - step / cfg.steps)
        opt.step()
        done = step + 1
        last = logs["loss"] if last is None else 0.9 * last + 0.1 * logs["loss"]
        first = first if first is not None else logs["loss"]
        bar.set_postfix(loss=f"{last:.3f}")
        if time.monotonic() - t1 > cfg.max_seconds:
            capped = True
            break
    bar.close()
    net.fusion = fusion
    net.eval()
    return {"images": len(samples), "instances": int(len(cache.a["inst_cls"])),
            "steps_done": done, "capped_by_time": capped, "features_s": round(features_s, 2),
            "finetune_s": round(time.monotonic() - t1, 2), "loss_first": first,
            "loss_last_ema": last}


def recipe_key(model_dir: Path, prompts: list[PromptExample], normals: list[np.ndarray],
               cfg: AdaptConfig) -> str:
    """Content hash of what the adapted model depends on."""
    h = hashlib.sha256(f"adapt/{ADAPT_VERSION}".encode())
    for name in ("weights.pt", "manifest.json"):
        h.update(hashlib.sha256((model_dir / name).read_bytes()).digest())
    # max_seconds is a safety cap, not content: a capped adaptation is redone (adapt_model)
    h.update(json.dumps({k: v for k, v in asdict(cfg).items() if k != "max_seconds"},
                        sort_keys=True).encode())
    for p in prompts:
        h.update(f"{p.prompt_id}\0{p.cls}\0{tuple(p.bbox)}".encode())
        h.update(np.ascontiguousarray(p.image).tobytes())
        if p.mask is not None:
            h.update(np.packbits(p.mask).tobytes())
    for n in normals:
        h.update(np.ascontiguousarray(n).tobytes())
    return h.hexdigest()[:20]


def adapt_model(model_dir: Path, prompts: list[PromptExample], normals: list[np.ndarray],
                cfg: AdaptConfig, out_root: Path, progress: bool = False) -> tuple[Path, dict]:
    """An adapted model folder for this recipe under `out_root`: the base encoder.onnx,
    adapted prompt.onnx and head.onnx, weights.pt, adapt.json.

    A folder that exists is reused, unless its adaptation stopped at the time cap (a busy
    machine): that one served its enrolment, but is not what the recipe asks for and would
    differ from machine to machine, so the next enrolment adapts again."""
    from inspector.inference.runtimes.base import write_pinned_manifest
    from inspector.training.export import export
    from inspector.training.train import load_net

    model_dir = Path(model_dir)
    if not (model_dir / "weights.pt").is_file():
        raise FileNotFoundError(f"{model_dir}: no weights.pt, so nothing to adapt")
    out = Path(out_root) / recipe_key(model_dir, prompts, normals, cfg)
    if (out / "adapt.json").is_file():
        kept = json.loads((out / "adapt.json").read_text(encoding="utf-8"))
        if not kept.get("capped_by_time"):
            return out, kept
        log.info("%s: its adaptation stopped at the time cap after %s of %s steps; adapting "
                 "again", out, kept.get("steps_done"), cfg.steps)
    t0 = time.monotonic()
    net = load_net(model_dir)
    samples = synthesize(prompts, normals, cfg)
    record = adapt_net(net, samples, cfg, encoder_tokens(model_dir, cfg.threads), progress)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    export(net, tmp, cfg.size, graphs=("prompt", "head"))
    shutil.copyfile(model_dir / "encoder.onnx", tmp / "encoder.onnx")
    import torch

    torch.save(net.trainable_state(), tmp / "weights.pt")
    write_pinned_manifest(tmp, json.loads((model_dir / "manifest.json").read_text("utf-8")))
    record = {**record, "base_model": str(model_dir), "config": asdict(cfg),
              "total_s": round(time.monotonic() - t0, 2)}
    (tmp / "adapt.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out, record
