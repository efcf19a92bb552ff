"""Replay source: image folders and COCO datasets, looping, rate, truth, errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.acquisition.base import EndOfStream, SourceError
from inspector.acquisition.replay import ReplaySource
from inspector.config.sources import ReplaySourceConfig
from inspector.core.frames import FramePool


def folder_of_images(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"img{i}.png"), np.full((20, 30), 10 * i, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return folder


def source(path: Path, **kw) -> ReplaySource:
    src = ReplaySource("cam0", ReplaySourceConfig(kind="replay", path=path, **kw))
    src.open(FramePool(4))
    return src


def grab(src: ReplaySource):
    frame = src.grab(1.0)
    assert frame is not None
    frame.meta["first_pixel"] = int(frame.image[0, 0])  # the buffer is reused after done()
    frame.done()
    return frame


def test_folder_loops_in_name_order(tmp_path: Path) -> None:
    src = source(folder_of_images(tmp_path / "imgs"))
    frames = [grab(src) for _ in range(5)]
    assert [f.part_id for f in frames] == ["img0", "img1", "img2", "img0", "img1"]
    assert [f.frame_id for f in frames] == [0, 1, 2, 3, 4]
    assert [f.meta["first_pixel"] for f in frames[:3]] == [0, 10, 20]
    assert frames[0].image.shape == (20, 30) and frames[0].truth is None


def test_no_loop_ends(tmp_path: Path) -> None:
    src = source(folder_of_images(tmp_path / "imgs", 2), loop=False)
    grab(src), grab(src)
    with pytest.raises(EndOfStream):
        src.grab(0.1)


def test_rate_limits_delivery(tmp_path: Path) -> None:
    src = source(folder_of_images(tmp_path / "imgs"), rate_hz=20)
    t0 = time.monotonic()
    for _ in range(6):
        grab(src)
    assert time.monotonic() - t0 >= 5 / 20 * 0.9
    assert src.grab(0.001) is None  # next frame not due within the timeout


def test_coco_dataset_carries_truth(tmp_path: Path) -> None:
    images = folder_of_images(tmp_path / "ds" / "images", 2)
    coco = {
        "images": [{"id": 1, "file_name": "img0.png"}, {"id": 2, "file_name": "img1.png"}],
        "categories": [{"id": 4, "name": "crack"}],
        "annotations": [{"id": 1, "image_id": 2, "category_id": 4, "bbox": [2, 3, 5, 4],
                         "segmentation": [[2, 3, 7, 3, 7, 7, 2, 7]]}],
    }
    (images.parent / "ann.json").write_text(json.dumps(coco))
    src = source(images.parent / "ann.json")
    good, bad = grab(src), grab(src)
    assert good.truth == []
    (t,) = bad.truth
    assert t.kind == "crack" and t.bbox == (2, 3, 5, 4)
    assert t.mask.shape == (20, 30) and t.mask[5, 4] and not t.mask[15, 20]


def test_errors_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images found"):
        source(empty)
    broken = folder_of_images(tmp_path / "b", 1)
    (broken / "img0.png").write_bytes(b"garbage")
    src = source(broken)
    with pytest.raises(SourceError, match="cannot read image .*img0.png"):
        src.grab(0.1)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SourceError, match="bad.json"):
        source(tmp_path / "bad.json")


def test_pool_exhaustion_returns_none(tmp_path: Path) -> None:
    src = ReplaySource("cam0", ReplaySourceConfig(kind="replay", path=folder_of_images(
        tmp_path / "i")))
    src.open(FramePool(1))
    first = src.grab(0.1)
    assert first is not None and src.grab(0.1) is None
    first.done()
    assert src.grab(0.1) is not None
