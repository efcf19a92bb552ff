"""The visual-prompt detector (kind "prompt"): any defect kind shown by a few examples.

Enrol: each prompt example of the recipe becomes an SSPE embedding (the `prompt` graph
on the tokens of its image, pooled over its mask or box, plus the radial spectrum of its
box); a class prototype is the normalised mean of its examples' embeddings. Detect: the
`encoder` graph turns the frame (resized to `size` x `size`) into tokens, the `head`
graph (PQS) returns top-K queries per prototype with boxes, scores and stride-4 mask
logits; per class, low scores are dropped and overlapping boxes suppressed (NMS); boxes
and masks are mapped back to the frame. Runs on any backend (`inspector.inference.runtimes`); no
torch. Normal parts are not used here (the unknown-defect branch is its own stage),
except by the optional enrolment-time adaptation (`adapt`, `inspector.training.adapt`, needs
torch): the prompt and head graphs are fine-tuned to the recipe's examples pasted onto its
good parts, and the detector then runs the adapted graphs (kept in the enrolled state).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
from pydantic import Field

from inspector.core.assets import model_path
from inspector.core.strict import YAML_WORD
from inspector.inference.detectors.base import (
    Detection,
    DetectorParams,
    EncodedDetector,
    PromptExample,
    from_json_bytes,
    json_bytes,
)
from inspector.inference.detectors.prompt_inputs import (
    prompt_spectrum,
    resize_mask,
    resize_square,
    scale_box,
    to_input,
    token_weights,
)
from inspector.inference.runtimes import open_backend
from inspector.inference.runtimes.base import GRAPHS, graph_paths, write_pinned_manifest

log = logging.getLogger(__name__)
DEFAULT_MODEL = "engines/prompt-v2"
# heads trained with made-up products as well (domain randomisation): less sure in
# domain, but they transfer, so they confirm the matcher on a product never seen
# (select's first candidate; docs/prompt-matching.md)
CONFIRM_MODEL = "engines/prompt-v3"
VERSION = "prompt/2"  # /2: enrolled state names each prompt's class


class PromptParams(DetectorParams):
    """`detector.params` of a recipe with `detector.kind: prompt`."""

    model: str = DEFAULT_MODEL  # model folder: absolute, from the working dir, else models_dir
    backend: Literal["auto", "onnxruntime", "tensorrt", "torch"] = "auto"
    size: Annotated[int, Field(ge=64, le=2048, multiple_of=16)] = 320
    min_score: Annotated[float, Field(ge=0, le=1)] = 0.05
    nms_iou: Annotated[float, Field(gt=0, le=1)] = 0.5
    cross_class_iou: Annotated[float, Field(gt=0, le=1)] | None = None  # off: per-class NMS only
    max_detections: Annotated[int, Field(ge=1)] = 100
    threads: Annotated[int, Field(ge=1, le=64)] = 1  # ONNX Runtime intra-op threads
    state_dir: str | None = None  # TensorRT engine cache (default: <model>/cache)
    # enrolment-time adaptation to the recipe (inspector.training.adapt): "auto" when torch
    # is installed, "on" requires it, "off" (default) enrols prototypes only
    adapt: Annotated[Literal["off", "auto", "on"], YAML_WORD] = "off"
    adapt_steps: Annotated[int, Field(ge=1, le=5000)] = 1500
    adapt_images: Annotated[int, Field(ge=1, le=1000)] = 160  # synthetic pasted images
    adapt_seed: int = 0
    adapt_threads: Annotated[int, Field(ge=1, le=64)] = 2
    # the fine-tuning stops here on a slow or busy machine; such an enrolment is used, but
    # marked provisional: the recipe cache and the adapted folder are redone next time
    adapt_max_seconds: Annotated[float, Field(gt=0, le=3600)] = 150.0
    # fit each class's box size to its examples at enrolment: the head runs on the prompt
    # images, and the query that best covers each example says how much too large or
    # small this product's boxes come out (a model's box sizes do not carry over to a
    # product it never saw); "off" keeps the head's boxes as they are; "auto" fits when
    # the enrolment adapted (measured: it helps an unseen product, and costs a trained
    # domain half a point without adaptation; docs/prompt-matching.md)
    box_fit: Annotated[Literal["off", "auto", "on"], YAML_WORD] = "auto"


def resolve_model(model: str) -> Path:
    """The model folder (inspector.core.assets.model_path); a clear error names it when missing."""
    return model_path(model)


def region_area(mask: np.ndarray | None, w: float, h: float, cell_px: float) -> float:
    """Frame pixels of a detection, what the recipe's minimum area judges: its mask's; the
    ellipse of its box where the mask is smaller than one mask logit cell, below what the
    stride-4 mask resolves (a pit a few pixels wide gets a mask of 6-10 px, its box 50-150
    px: the demo's pits were not counted; BENCHMARKS.md)."""
    if mask is None:
        return float(w * h)
    area = float(mask.sum())
    return max(area, float(np.pi / 4 * w * h)) if area < cell_px else area


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, limit: int | None = None
        ) -> list[int]:
    """Greedy non-maximum suppression; boxes (n, 4) x1 y1 x2 y2; indices kept, best first.
    `limit`: stop once that many are kept (the same first ones; the matcher keeps 50 of
    hundreds of peaks, and the loop is most of its suppression time)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    while len(order) and (limit is None or len(keep) < limit):
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        lt = np.maximum(boxes[i, :2], boxes[rest, :2])
        rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        ov = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[ov <= iou]
    return keep


def _scaled(boxes: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """(n, 4) x1 y1 x2 y2 boxes scaled about their centres by (fx, fy)."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * factor
    return np.concatenate([c - half, c + half], 1)


class PromptDetector(EncodedDetector):
    """The visual-prompt detector: prototypes from the prompts, graphs run on a backend."""

    kind = "prompt"
    cacheable = True  # enrolled_state / load_enrolled_state

    def __init__(self, params: dict | None = None) -> None:
        self.params = PromptParams.parse(params or {})
        self.model_dir = resolve_model(self.params.model)
        self.paths = graph_paths(self.model_dir)
        state = Path(self.params.state_dir) if self.params.state_dir else None
        self.backend = open_backend(self.params.backend, self.model_dir, state,
                                    threads=self.params.threads)
        self.classes: list[str] = []
        self.protos = np.zeros((0, 0), np.float32)
        # a net with a size prior also takes each class's log example size (C, 2)
        manifest = json.loads((self.model_dir / "manifest.json").read_text(encoding="utf-8"))
        self.size_prior = bool(manifest.get("net_config", {}).get("size_prior", False))
        self.sizes = np.zeros((0, 2), np.float32)
        self.box_gain = np.zeros((0, 2), np.float32)  # per class log (w, h) box factor
        self.embeddings = np.zeros((0, 0), np.float32)
        self.prompt_ids: list[str] = []
        self.prompt_classes: list[str] = []
        self._by_class: dict[str, tuple[list[str], np.ndarray]] = {}
        self.last_timing: dict[str, float] = {}
        self.adapt_record: dict | None = None
        self._adapted: dict[str, bytes] = {}  # graph name -> ONNX bytes of the adaptation
        self._sha = ""

    def _use_model(self, folder: Path) -> None:
        """Run the graphs of `folder` (the base model or an adaptation of it)."""
        self.paths = graph_paths(folder)
        state = Path(self.params.state_dir) if self.params.state_dir else None
        self.backend = open_backend(self.params.backend, folder, state,
                                    threads=self.params.threads)
        self._sha = ""

    def _adapt_root(self) -> Path:
        base = Path(self.params.state_dir) if self.params.state_dir else Path(
            tempfile.gettempdir()) / "inspector"
        return base / "adapted"

    def _adapt(self, prompts: list[PromptExample], normals: list[np.ndarray],
               progress: bool) -> None:
        """Fine-tune the prompt and head graphs to this recipe (see inspector.training.adapt)."""
        self._adapted, self.adapt_record = {}, None
        if self.paths["head"].parent != self.model_dir:
            self._use_model(self.model_dir)  # always adapt from the base model
        if self.params.adapt == "off":
            return
        why = ("torch is not installed (pip install -e .[train])"
               if importlib.util.find_spec("torch") is None else
               f"{self.model_dir} has no weights.pt"
               if not (self.model_dir / "weights.pt").is_file() else "")
        if why:
            if self.params.adapt == "on":
                raise ValueError(f"detector.params.adapt: 'on', but {why}")
            log.warning("prompt detector: enrolling without adaptation: %s", why)
            return
        from inspector.training.adapt import AdaptConfig, adapt_model

        p = self.params
        cfg = AdaptConfig(seed=p.adapt_seed, size=p.size, steps=p.adapt_steps,
                          images=p.adapt_images, threads=p.adapt_threads,
                          max_seconds=p.adapt_max_seconds)
        folder, self.adapt_record = adapt_model(self.model_dir, prompts, normals, cfg,
                                                self._adapt_root(), progress)
        self._adapted = {g: (folder / f"{g}.onnx").read_bytes() for g in ("prompt", "head")}
        self._use_model(folder)

    def _restore_adapted(self, graphs: dict[str, bytes]) -> None:
        """Write the adapted graphs of an enrolled state to a content-named folder."""
        h = hashlib.sha256(b"".join(graphs[g] for g in sorted(graphs))).hexdigest()[:20]
        folder = self._adapt_root() / f"state-{h}"
        if not (folder / "head.onnx").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.model_dir / "encoder.onnx", folder / "encoder.onnx")
            for g, data in graphs.items():
                tmp = folder / f".{g}.onnx.tmp"
                tmp.write_bytes(data)
                tmp.replace(folder / f"{g}.onnx")
            write_pinned_manifest(folder, json.loads(
                (self.model_dir / "manifest.json").read_text(encoding="utf-8")))
        self._adapted = dict(graphs)
        self._use_model(folder)

    # -- enrolment ---------------------------------------------------------------
    def encode(self, image: np.ndarray) -> np.ndarray:
        """Mono image -> tokens (1, D, size/8, size/8)."""
        sq = resize_square(image, self.params.size)
        return self.backend.run("encoder", {"image": to_input(sq)})["tokens"]

    def embed(self, prompts: list[PromptExample], progress: bool = False,
              tokens_of: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """(P, D) unit SSPE embeddings of the prompt examples; `tokens_of` (by id of
        the image), when given, collects each prompt image's tokens (else only the
        current image's are held: large inputs make large tokens)."""
        from tqdm import tqdm

        size = self.params.size
        out = []
        keep = tokens_of is not None
        held: dict[int, np.ndarray] = tokens_of if tokens_of is not None else {}
        for p in tqdm(prompts, desc="enrol prompts", disable=not progress):
            key = id(p.image)
            if key not in held:
                if not keep:
                    held.clear()  # prompts come grouped by image
                held[key] = self.encode(p.image)
            sq = resize_square(p.image, size)
            box = scale_box(p.bbox, p.image.shape[:2], size)
            mask = None if p.mask is None else resize_mask(p.mask, size)
            w = token_weights(mask, box, size)[None]
            spec = prompt_spectrum(sq, box)[None]
            e = self.backend.run("prompt", {"tokens": held[key], "weights": w,
                                            "spectrum": spec})["embedding"]
            out.append(e[0])
        return np.array(out, np.float32).reshape(len(out), -1)

    def enroll(self, prompts: list[PromptExample], normals: list[np.ndarray],
               progress: bool = False) -> None:
        self._adapt(prompts, normals, progress)
        fit = self.params.box_fit == "on" or (self.params.box_fit == "auto"
                                              and self.adapt_record is not None)
        tokens_of: dict[int, np.ndarray] | None = {} if fit else None
        emb = self.embed(prompts, progress, tokens_of)
        classes = list(dict.fromkeys(p.cls for p in prompts))
        protos = []
        for c in classes:
            m = emb[[i for i, p in enumerate(prompts) if p.cls == c]].mean(0)
            protos.append(m / max(float(np.linalg.norm(m)), 1e-9))
        self.classes = classes
        self.protos = np.array(protos, np.float32).reshape(len(classes), -1)
        self.sizes = self._class_sizes(prompts, classes)
        self.box_gain = np.zeros((len(classes), 2), np.float32)
        if tokens_of is not None:
            self.box_gain = self._fit_boxes(prompts, tokens_of)
        self.embeddings = emb
        self.prompt_ids = [p.prompt_id for p in prompts]
        self.prompt_classes = [p.cls for p in prompts]
        self._index_prompts()

    def _class_sizes(self, prompts: list[PromptExample], classes: list[str]) -> np.ndarray:
        """(C, 2) mean log width and height of each class's examples, in model pixels."""
        size = self.params.size
        out = []
        for c in classes:
            wh = [scale_box(p.bbox, p.image.shape[:2], size)[2:] for p in prompts if p.cls == c]
            out.append(np.log(np.maximum(np.array(wh, np.float64), 1.0)).mean(0))
        return np.array(out, np.float32).reshape(len(classes), 2)

    def _fit_boxes(self, prompts: list[PromptExample],
                   tokens_of: dict[int, np.ndarray]) -> np.ndarray:
        """(C, 2) log width and height factors that make each class's boxes the size of
        its examples: per example, the best-scoring query of its class whose box centre
        lies on the example; per class, the median log ratio of example to query size,
        within a factor of 4. A class whose examples no query lands on keeps factor 1."""
        size, c_of = self.params.size, {c: i for i, c in enumerate(self.classes)}
        logs: list[list[tuple[float, float]]] = [[] for _ in self.classes]
        head: dict[int, dict[str, np.ndarray]] = {}
        for p in prompts:
            key = id(p.image)
            if key not in head:
                feed = {"tokens": tokens_of[key], "prototypes": self.protos}
                if self.size_prior:
                    feed["sizes"] = self.sizes
                head[key] = self.backend.run("head", feed)
            c = c_of[p.cls]
            b, s = head[key]["boxes"][c], head[key]["scores"][c]
            x, y, w, h = scale_box(p.bbox, p.image.shape[:2], size)
            cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
            on = (cx >= x) & (cx <= x + w) & (cy >= y) & (cy <= y + h)
            if not on.any():
                continue
            j = int(np.argmax(np.where(on, s, -np.inf)))
            pw, ph = max(float(b[j, 2] - b[j, 0]), 1.0), max(float(b[j, 3] - b[j, 1]), 1.0)
            logs[c].append((np.log(max(w, 1.0) / pw), np.log(max(h, 1.0) / ph)))
        lim = float(np.log(4.0))
        out = [np.clip(np.median(np.array(v), 0), -lim, lim) if v else np.zeros(2)
               for v in logs]
        return np.array(out, np.float32).reshape(len(self.classes), 2)

    def enrolled_state(self) -> dict[str, np.ndarray] | None:
        state = {"prototypes": self.protos, "classes": np.array(self.classes, dtype=str),
                 "sizes": self.sizes, "box_gain": self.box_gain,
                 "embeddings": self.embeddings, "prompt_ids": np.array(self.prompt_ids, dtype=str),
                 "prompt_classes": np.array(self.prompt_classes, dtype=str)}
        for g, data in self._adapted.items():
            state[f"adapted_{g}"] = np.frombuffer(data, np.uint8)
        if self.adapt_record is not None:
            state["adapt_record"] = json_bytes(self.adapt_record)
        return state

    @property
    def provisional(self) -> bool:
        """True when the adaptation stopped at its time cap (adapt_max_seconds)."""
        return bool((self.adapt_record or {}).get("capped_by_time"))

    def load_enrolled_state(self, state: dict[str, np.ndarray]) -> None:
        protos = np.asarray(state["prototypes"], np.float32)
        classes = [str(c) for c in state["classes"]]
        if protos.ndim != 2 or len(classes) != protos.shape[0]:
            raise ValueError(f"enrolled state: {protos.shape[0]} prototypes for "
                             f"{len(classes)} classes")
        graphs = {g: np.asarray(state[f"adapted_{g}"], np.uint8).tobytes()
                   for g in ("prompt", "head") if f"adapted_{g}" in state}
        if graphs:
            self._restore_adapted(graphs)
        elif self._adapted:
            self._adapted = {}
            self._use_model(self.model_dir)
        sizes = np.asarray(state.get("sizes", np.zeros((len(classes), 2))), np.float32)
        if self.size_prior and sizes.shape != (len(classes), 2):
            raise ValueError(f"enrolled state: sizes of shape {sizes.shape} for "
                             f"{len(classes)} classes")
        gain = np.asarray(state.get("box_gain", np.zeros((len(classes), 2))), np.float32)
        if gain.shape != (len(classes), 2):
            raise ValueError(f"enrolled state: box_gain of shape {gain.shape} for "
                             f"{len(classes)} classes")
        record = from_json_bytes(state.get("adapt_record"))
        self.protos, self.classes, self.sizes, self.box_gain = protos, classes, sizes, gain
        self.adapt_record = record
        self.embeddings = np.asarray(state.get("embeddings", np.zeros((0, 0))), np.float32)
        self.prompt_ids = [str(p) for p in state.get("prompt_ids", [])]
        self.prompt_classes = [str(c) for c in state.get("prompt_classes", [])]
        if len(self.prompt_classes) != len(self.prompt_ids):
            raise ValueError(f"enrolled state: {len(self.prompt_ids)} prompt ids for "
                             f"{len(self.prompt_classes)} prompt classes")
        self._index_prompts()

    def _index_prompts(self) -> None:
        """Per class: its prompt ids and their unit embeddings (for _nearest_prompt)."""
        self._by_class: dict[str, tuple[list[str], np.ndarray]] = {}
        if self.embeddings.shape[0] != len(self.prompt_ids):
            return
        norms = np.linalg.norm(self.embeddings, axis=1, keepdims=True)
        unit = self.embeddings / np.maximum(norms, 1e-9)
        for c in dict.fromkeys(self.prompt_classes):
            idx = [i for i, pc in enumerate(self.prompt_classes) if pc == c]
            self._by_class[c] = ([self.prompt_ids[i] for i in idx], unit[idx])

    # -- detection ---------------------------------------------------------------
    def detect_tokens(self, tokens: np.ndarray, hw: tuple[int, int],
                      protos: np.ndarray | None = None,
                      classes: list[str] | None = None,
                      sizes: np.ndarray | None = None) -> list[Detection]:
        """Detections for an image already encoded (evaluation reuses tokens across
        prompt seeds); `protos`/`classes` override the enrolled ones."""
        own = protos is None  # enrolled prototypes: name the prompt behind each detection
        protos = self.protos if protos is None else protos
        classes = self.classes if classes is None else classes
        if len(classes) == 0:
            return []
        feed = {"tokens": tokens, "prototypes": protos}
        if self.size_prior:
            feed["sizes"] = self.sizes if sizes is None else sizes
        out = self.backend.run("head", feed)
        boxes, scores, masks = out["boxes"], out["scores"], out["masks"]
        p = self.params
        h, w = hw
        sx, sy = w / p.size, h / p.size
        found: list[tuple[float, int, np.ndarray, int, int]] = []
        for c in range(len(classes)):
            ok = np.nonzero(scores[c] >= p.min_score)[0]
            if not len(ok):
                continue
            b = boxes[c, ok].copy()
            if own and self.box_gain[c].any():  # enrolment sized it with the classes
                b = _scaled(b, np.exp(self.box_gain[c]))
            b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, p.size)
            b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, p.size)
            for j in nms(b, scores[c, ok], p.nms_iou):
                found.append((float(scores[c, ok[j]]), c, b[j], c, int(ok[j])))
        found.sort(key=lambda f: -f[0])
        if p.cross_class_iou is not None and found:
            bx = np.array([f[2] for f in found])
            found = [found[i] for i in nms(bx, np.array([f[0] for f in found]),
                                           p.cross_class_iou)]
        cell_px = (p.size / masks.shape[-1]) ** 2 * sx * sy  # one mask logit, frame px
        dets = []
        for score, c, b, _, k in found[: p.max_detections]:
            x1, y1, x2, y2 = b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            mask = self._mask(masks[c, k], b, (x1, y1, x2, y2), hw)
            area = region_area(mask, x2 - x1, y2 - y1, cell_px)
            dets.append(Detection(cls=classes[c], score=score,
                                  bbox=(float(x1), float(y1), float(x2 - x1), float(y2 - y1)),
                                  mask=mask, area_px=area,
                                  prompt_id=self._nearest_prompt(tokens, b, classes[c])
                                  if own else None))
        return dets

    def _nearest_prompt(self, tokens: np.ndarray, box_in: np.ndarray, cls: str) -> str | None:
        """The example of `cls` whose SSPE embedding is closest (cosine) to the mean token
        inside the detection's box: which reference the operator should compare it with.
        Tokens and embeddings share one space (PQS ranks tokens against prototypes)."""
        ids, emb = self._by_class.get(cls, ([], None))
        if not ids:
            return None
        t = tokens[0]
        cell = self.params.size / t.shape[-1]
        x0, y0 = int(box_in[0] // cell), int(box_in[1] // cell)
        x1 = max(int(np.ceil(box_in[2] / cell)), x0 + 1)
        y1 = max(int(np.ceil(box_in[3] / cell)), y0 + 1)
        v = t[:, y0:y1, x0:x1].reshape(t.shape[0], -1).mean(1)
        return ids[int(np.argmax(emb @ v))]  # |v| is the same for all: cosine order

    def _mask(self, logits: np.ndarray, box_in: np.ndarray, box_img, hw) -> np.ndarray | None:
        """Stride-4 mask logits -> bool mask of the (rounded) box in frame pixels."""
        h, w = hw
        # origin and size rounded as results.encode_mask expects them
        x0, y0 = int(round(box_img[0])), int(round(box_img[1]))
        x1 = min(x0 + max(1, int(round(box_img[2] - box_img[0]))), w)
        y1 = min(y0 + max(1, int(round(box_img[3] - box_img[1]))), h)
        bw, bh = x1 - x0, y1 - y0
        if bw < 1 or bh < 1:
            return None
        # sample the logits at the centres of the frame pixels of the box
        size = self.params.size
        cell = size / logits.shape[-1]
        xs = ((np.arange(x0, x1) + 0.5) * size / w) / cell - 0.5
        ys = ((np.arange(y0, y1) + 0.5) * size / h) / cell - 0.5
        mx, my = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
        m = cv2.remap(logits.astype(np.float32), mx, my, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE)
        # logits above 0; where the peak itself stays under 1 (small, faint defects: the
        # stride-4 logits of a pit a few pixels wide barely rise above 0), the pixels
        # within one logit of the peak, so that the area the recipe judges is the
        # defect's and not a few pixels (and does not jump where the peak crosses 0)
        return m >= min(0.0, float(m.max()) - 1.0)

    @property
    def model_sha256(self) -> str:
        """sha256 over the three ONNX graphs (encoder, prompt, head, in that order), the
        code version and the input size (prototypes depend on all of them)."""
        if not self._sha:
            h = hashlib.sha256()
            for g in GRAPHS:
                h.update(self.paths[g].read_bytes())
            h.update(f"{VERSION}\0size={self.params.size}".encode())
            p = self.params
            if p.adapt != "off":  # the enrolment differs, so must the cache key
                h.update(f"\0adapt={p.adapt},{p.adapt_steps},{p.adapt_seed},"
                         f"{p.adapt_threads},{p.adapt_images},box_fit={p.box_fit}".encode())
            elif p.box_fit == "on":  # ("auto" fits only an adapted enrolment)
                h.update(b"\0box_fit=on")
            self._sha = h.hexdigest()
        return self._sha
