"""Training data for the prompt detector: sources, the backbone feature cache, episodes.

The backbone is frozen, so its features for every training image are computed once and
cached (`.npz`, no pickle) under a git-ignored folder; training then runs the light heads
on those features. Sources: synthetic parts (seeded) and the TRAIN split of COCO-layout
datasets (`annotations_train.json`; a test split is refused). An episode samples a few
classes of one source, k <= 4 prompt instances per class from some images, and query
images (with targets) from other images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inspector.core.atomic import write_atomic
from inspector.core.coco import decode_segmentation
from inspector.inference.detectors.prompt_inputs import (
    STRIDE,
    coverage,
    prompt_spectrum,
    resize_mask,
    resize_square,
    scale_box,
    to_input,
    token_weights,
)

CACHE_VERSION = 1


@dataclass
class Instance:
    """One annotated defect of a training image."""

    cls: str
    bbox: tuple[float, float, float, float]  # x, y, w, h in source pixels
    mask: np.ndarray | None  # bool, source size


@dataclass
class Sample:
    """One training image with its defect instances."""

    image: np.ndarray  # mono uint8
    instances: list[Instance] = field(default_factory=list)


def coco_instances(coco: dict, image_id: int, hw: tuple[int, int], cats: dict) -> list[Instance]:
    """The annotations of one image as Instances, masks decoded at size `hw`."""
    out = []
    for a in coco["_by_image"].get(image_id, []):
        mask = decode_segmentation(a.get("segmentation"), *hw)
        out.append(Instance(cats[a["category_id"]], tuple(float(v) for v in a["bbox"]), mask))
    return out


def coco_train_samples(folder: Path, limit: int | None = None):
    """Yield (name, Sample) for the train split of a COCO-layout dataset folder."""
    import cv2

    ann_file = Path(folder) / "annotations_train.json"
    if not ann_file.is_file():
        raise FileNotFoundError(f"{ann_file}: no train split (training never reads a test split)")
    coco = json.loads(ann_file.read_text(encoding="utf-8"))
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict[int, list] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    coco["_by_image"] = by_image
    for info in coco["images"][:limit]:
        path = Path(folder) / "images" / info["file_name"]
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ValueError(f"{path}: not a readable image")
        yield info["file_name"], Sample(img, coco_instances(coco, info["id"], img.shape, cats))


def synthetic_samples(n: int, seed: int, size: int = 512):
    """Yield (name, Sample) of n synthetic parts (most with 1..3 defects)."""
    from inspector.acquisition.synthetic_parts import frame_rng, render_part

    for i in range(n):
        img, truths = render_part(frame_rng(seed, i), size, size, defect_rate=0.9, max_defects=3)
        yield f"synthetic-{seed}-{i}", Sample(
            img, [Instance(t.kind, tuple(float(v) for v in t.bbox), t.mask) for t in truths])


@dataclass
class Source:
    """One training source: `kind` synthetic (n images, seed), randomised (one made-up
    product, randomised.py: n images of micro-domain `seed`) or coco (a dataset folder)."""

    name: str
    kind: str
    path: str = ""
    n: int = 0
    seed: int = 0

    def samples(self):
        if self.kind == "synthetic":
            return synthetic_samples(self.n, self.seed)
        if self.kind == "randomised":
            from inspector.training.randomised import randomised_samples

            return randomised_samples(self.seed, self.n)
        return coco_train_samples(Path(self.path), self.n or None)

    def count(self) -> int:
        if self.kind in ("synthetic", "randomised") or self.n:
            return self.n
        coco = json.loads((Path(self.path) / "annotations_train.json").read_text("utf-8"))
        return len(coco["images"])


class FeatureCache:
    """Arrays of cached backbone features and per-instance targets (see `build`)."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        self.a = arrays
        self.meta = meta
        self.classes: list[str] = meta["classes"]
        self.sources: list[str] = meta["sources"]

    @staticmethod
    def key(sources: list[Source], size: int) -> str:
        blob = json.dumps([CACHE_VERSION, size, [s.__dict__ for s in sources]], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def load_or_build(cls, sources: list[Source], size: int, folder: Path,
                      progress: bool = True) -> FeatureCache:
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / f"features-{cls.key(sources, size)}.npz"
        if file.is_file():
            with np.load(file, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(str(arrays.pop("meta")))
            return cls(arrays, meta)
        cache = cls.build(sources, size, progress)
        # a temporary file of its own (write_atomic): two trainings that build the same
        # cache at once (leave-one-out runs side by side; the cache holds every source) each
        # write a whole file and the last rename wins
        write_atomic(file, lambda f: np.savez(f, meta=np.array(json.dumps(cache.meta)),
                                              **cache.a))
        return cache

    @classmethod
    def build(cls, sources: list[Source], size: int, progress: bool = True,
              batch: int = 16,
              encode: Callable[[np.ndarray], np.ndarray] | None = None) -> FeatureCache:
        """`encode`, when given, maps an input batch (B, 1, size, size) to tokens
        (B, D, size/8, size/8) of a frozen fusion (the exported encoder graph): the cache
        then holds those tokens in "f8" (float32) and a dummy "f16", for enrolment-time
        adaptation, which runs the encoder graph many times faster than the torch backbone."""
        import torch

        from inspector.training.backbone import Lite0Features

        torch.manual_seed(0)
        backbone = None if encode else Lite0Features(pretrained=True).eval()
        classes: list[str] = []
        f8s, f16s, img_src = [], [], []
        inst: dict[str, list] = {k: [] for k in ("image", "cls", "box", "w8", "cov4", "spec",
                                                 "has_mask")}
        total = sum(s.count() for s in sources)
        bar = tqdm(total=total, desc="backbone features", unit="img", disable=not progress)
        pending: list[np.ndarray] = []

        def flush() -> None:
            if not pending:
                return
            x = np.concatenate(pending)
            if encode is not None:
                f8s.append(encode(x).astype(np.float32))
                f16s.append(np.zeros((len(x), 1, 1, 1), np.float16))
            else:
                assert backbone is not None
                with torch.no_grad():
                    f8, f16 = backbone(torch.from_numpy(x))
                f8s.append(f8.numpy().astype(np.float16))
                f16s.append(f16.numpy().astype(np.float16))
            pending.clear()

        for si, src in enumerate(sources):
            for _name, sample in src.samples():
                sq = resize_square(sample.image, size)
                idx = len(img_src)
                img_src.append(si)
                pending.append(to_input(sq))
                for ins in sample.instances:
                    name = f"{src.name}/{ins.cls}"
                    if name not in classes:
                        classes.append(name)
                    box = scale_box(ins.bbox, sample.image.shape, size)
                    m = None if ins.mask is None else resize_mask(ins.mask, size)
                    inst["image"].append(idx)
                    inst["cls"].append(classes.index(name))
                    inst["box"].append(box)
                    inst["w8"].append(token_weights(m, box, size))
                    inst["cov4"].append(coverage(m, box, size, STRIDE // 2))
                    inst["spec"].append(prompt_spectrum(sq, box))
                    inst["has_mask"].append(m is not None)
                if len(pending) == batch:
                    flush()
                bar.update(1)
        flush()
        bar.close()
        arrays: dict[str, np.ndarray] = {
            "f8": np.concatenate(f8s), "f16": np.concatenate(f16s),
            "img_source": np.array(img_src, np.int64),
            "inst_image": np.array(inst["image"], np.int64),
            "inst_cls": np.array(inst["cls"], np.int64),
            "inst_box": np.array(inst["box"], np.float32).reshape(-1, 4),
            "inst_w8": np.array(inst["w8"], np.float16),
            "inst_cov4": np.array(inst["cov4"], np.float16),
            "inst_spec": np.array(inst["spec"], np.float32),
            "inst_has_mask": np.array(inst["has_mask"], bool),
        }
        meta = {"classes": classes, "sources": [s.name for s in sources], "size": size,
                "version": CACHE_VERSION}
        return cls(arrays, meta)


@dataclass
class Episode:
    """One episode as indices into the feature cache: images, prompts, queries, classes."""

    images: np.ndarray  # (B,) cache image indices (prompts' and queries' images)
    prompt_inst: np.ndarray  # (P,) instance indices
    prompt_cls: np.ndarray  # (P,) episode class 0..C-1
    query_img: np.ndarray  # (Q,) positions in `images`
    classes: np.ndarray  # (C,) global class ids


class EpisodeSampler:
    """Seeded episodes: 1..max_classes classes of one source, 1..max_shots prompts each."""

    def __init__(self, cache: FeatureCache, seed: int, max_classes: int = 3,
                 max_shots: int = 4, source_weights: dict[str, float] | None = None) -> None:
        self.c = cache
        self.rng = np.random.default_rng(seed)
        self.max_classes, self.max_shots = max_classes, max_shots
        a = cache.a
        self.by_class: dict[int, dict[int, list[int]]] = {}  # cls -> image -> instances
        for i, (img, k) in enumerate(zip(a["inst_image"], a["inst_cls"], strict=True)):
            self.by_class.setdefault(int(k), {}).setdefault(int(img), []).append(i)
        self.src_of_class = {k: int(a["img_source"][next(iter(v))])
                             for k, v in self.by_class.items()}
        self.images_of_source = {s: np.nonzero(a["img_source"] == s)[0]
                                 for s in range(len(cache.sources))}
        usable = [k for k, v in self.by_class.items() if len(v) >= 2]
        self.classes_of_source = {s: [k for k in usable if self.src_of_class[k] == s]
                                  for s in range(len(cache.sources))}
        self.sources = [s for s, v in self.classes_of_source.items() if v]
        if not self.sources:
            raise ValueError("no class has instances in two or more images")
        weights = source_weights or {}
        # a source of weight 0 is left out entirely (e.g. an open-set model without MagTile)
        self.sources = [s for s in self.sources if weights.get(cache.sources[s], 1.0) > 0]
        if not self.sources:
            raise ValueError("every source has weight 0")
        w = np.array([weights.get(cache.sources[s], 1.0) for s in self.sources])
        self.source_p = w / w.sum()

    def sample(self) -> Episode:
        """One episode; every class has at least one prompt from a non-query image."""
        while True:
            ep = self._draw()
            if ep is not None:
                return ep

    def _draw(self) -> Episode | None:
        r = self.rng
        s = self.sources[r.choice(len(self.sources), p=self.source_p)]
        pool = self.classes_of_source[s]
        n_cls = int(r.integers(1, min(self.max_classes, len(pool)) + 1))
        classes = [int(k) for k in r.choice(pool, n_cls, replace=False)]
        queries: list[int] = []
        for k in classes:
            imgs = [i for i in self.by_class[k] if i not in queries]
            if imgs:
                queries.append(int(r.choice(imgs)))
        if r.random() < 0.5:  # an image of the same source without these classes
            cands = self.images_of_source[s]
            img = int(cands[r.integers(len(cands))])
            if all(img not in self.by_class[k] for k in classes):
                queries.append(img)
        p_inst, p_cls = [], []
        for ci, k in enumerate(classes):
            imgs = [i for i in self.by_class[k] if i not in queries]
            if not imgs:
                return None
            shots = int(r.integers(1, self.max_shots + 1))
            for img in r.choice(imgs, min(shots, len(imgs)), replace=False):
                p_inst.append(int(r.choice(self.by_class[k][int(img)])))
                p_cls.append(ci)
        p_img = [int(self.c.a["inst_image"][i]) for i in p_inst]
        images = list(dict.fromkeys(queries + p_img))
        return Episode(np.array(images), np.array(p_inst), np.array(p_cls),
                       np.arange(len(queries)), np.array(classes))
