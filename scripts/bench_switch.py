#!/usr/bin/env python3
"""Benchmark recipe hot swap under load (not a test): switch time and frames lost.

Builds two recipes of 20 defect classes with 4 prompt examples each (synthetic parts,
texture detector, `--size` px, 16 good parts), then measures
  * cold enrolment: load_active() with the recipe's cache removed (validate + hash +
    enrol + cache write), `--cold` times per recipe;
  * warm load: load_active() from a fresh cache, `--warm` times;
  * switching under load: the full service (synthetic camera at `--rate` Hz, default
    queues, JSONL sink and archive as configured by default) switched back and forth
    `--switches` times through the control socket, as `inspector recipe switch` does,
    one switch every `--interval` s: the switch call's wall time, the time from the
    request to the first result judged by the new recipe, frames dropped, gaps in
    frame ids, and latency of the frames judged around the switches;
  * two cold switches under load (the target's cache removed first): the service's
    way, enrolment in a child process (recipe_cache.enroll_isolated), and for
    comparison enrolment in the service's control thread.
Prints Markdown tables; writes a latency timeline PNG (`--png`).

    .venv/bin/python scripts/bench_switch.py [--switches 10] [--rate 5] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from inspector.acquisition.synthetic_parts import (  # noqa: E402
    DEFECT_KINDS,
    frame_rng,
    good_part,
    render_part,
    save_coco,
    write_png,
)
from inspector.config.station import load_config  # noqa: E402
from inspector.recipes.cache import CACHE_DIR  # noqa: E402
from inspector.recipes.recipe import load_recipe  # noqa: E402
from inspector.runtime.control import call  # noqa: E402
from inspector.runtime.service import Service, control_path, load_active  # noqa: E402

GROUPS = 4  # classes per defect kind: 5 kinds x 4 = 20 classes
SETTLE_S = 1.0  # drops are counted from a switch request until this long after its ack
PER_CLASS = 4


def make_bank_recipe(folder: Path, recipe_id: str, seed: int, size: int, n_normal: int = 16
                     ) -> Path:
    """20 classes (`<kind>_<g>`), 4 prompts each from distinct images, 16 good parts."""
    (folder / "normal").mkdir(parents=True, exist_ok=True)
    for i in range(n_normal):
        write_png(folder / "normal" / f"good_{i:03d}.png",
                  good_part(frame_rng(seed, i), size, size))
    samples = []
    for i in range(GROUPS * PER_CLASS):
        for attempt in range(20):  # every image must carry all five kinds
            img, truths = render_part(frame_rng(seed + 1, 100 * i + attempt), size, size,
                                      defects=DEFECT_KINDS)
            if len(truths) == len(DEFECT_KINDS):
                break
        samples.append((img, truths))
    save_coco(folder / "prompts", samples, json_name="prompts.json", images_dir=".",
              names=[f"prompt_{i:02d}.png" for i in range(len(samples))])
    bank_file = folder / "prompts" / "prompts.json"
    bank = json.loads(bank_file.read_text())
    kind_of = {c["id"]: c["name"] for c in bank["categories"]}
    cats, anns = [], []
    for a in bank["annotations"]:
        g = (a["image_id"] - 1) // PER_CLASS  # images 4g..4g+3 serve group g
        name = f"{kind_of[a['category_id']]}_{g}"
        cid = next((c["id"] for c in cats if c["name"] == name), None)
        if cid is None:
            cid = len(cats) + 1
            cats.append({"id": cid, "name": name})
        n = sum(x["category_id"] == cid for x in anns) + 1
        anns.append({**a, "id": len(anns) + 1, "category_id": cid, "prompt_id": f"{name}-{n}"})
    bank_file.write_text(json.dumps({**bank, "annotations": anns, "categories": cats}))
    doc = {"id": recipe_id, "rev": 1, "product": f"bench {recipe_id}", "mm_per_px": 0.05,
           "detector": {"kind": "texture", "params": {}},
           "classes": [{"name": c["name"], "threshold": 0.5, "plc_code": 10 + c["id"]}
                       for c in cats],
           "unknown": {"enabled": True, "threshold": 0.6, "plc_code": 90}}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def timed_load(folder: Path) -> float:
    t0 = time.perf_counter()
    load_active(folder)
    return time.perf_counter() - t0


def run_service(root: Path, args) -> dict:
    """Start the service on recipe a, switch a<->b under load, then two cold switches."""
    cfg_file = root / "station.yaml"
    cfg_file.write_text(yaml.safe_dump({
        "station": {"site": "bench", "line": "l1", "station": "s1"},
        "cameras": [{"name": "cam0", "source": {"kind": "synthetic", "seed": 77,
                                                 "width": args.size, "height": args.size,
                                                 "rate_hz": args.rate}}],
        "recipe": str(root / "recipes" / "a"),
        "storage": {"state_dir": str(root / "state")},
        "console": False,
    }, sort_keys=False))
    cfg = load_config(cfg_file)
    results: list[dict] = []
    lock = threading.Lock()

    def on_result(f) -> None:
        with lock:
            results.append({"frame_id": f.result.frame_id, "recipe": f.result.recipe.id,
                            "t_done": time.monotonic(), "t_arrival": f.frame.t_arrival,
                            "latency": f.result.latency_ms.total})

    svc = Service(cfg, on_result=on_result)
    svc.start()
    t_start = time.monotonic()
    sock = control_path(cfg)
    switches = []

    def dropped() -> int:
        return svc.pipeline.stats.counters.get("dropped_queue", 0)
    try:
        time.sleep(args.warmup)
        names = (["b", "a"] * args.switches)[:args.switches]
        plan = [(n, "") for n in names] + [("c", "child"), ("a", ""), ("c", "in-process")]
        for i, (name, cold) in enumerate(plan):
            if cold:  # recipe c's cache removed: the switch enrols
                shutil.rmtree(root / "recipes" / "c" / CACHE_DIR, ignore_errors=True)
            svc.isolate_enrolment = cold != "in-process"
            d0 = dropped()
            t0 = time.monotonic()
            answer = call(sock, {"cmd": "switch", "recipe_id": name}, timeout=3600)
            t1 = time.monotonic()
            if not answer.get("ok"):
                raise RuntimeError(f"switch {i} to {name} failed: {answer}")
            time.sleep(SETTLE_S)  # frames queued during the switch are judged by now
            switches.append({"to": name, "t0": t0, "t1": t1, "cold": cold,
                             "dropped": dropped() - d0})
            time.sleep(max(args.interval - SETTLE_S, 0))
    finally:
        svc.stop()
    c = svc.pipeline.stats.counters
    return {"results": results, "switches": switches, "counters": dict(c),
            "seconds": time.monotonic() - t_start}


def analyse(run: dict) -> list[dict]:
    res = sorted(run["results"], key=lambda r: r["frame_id"])
    rows = []
    for s in run["switches"]:
        first_new = next((r for r in res if r["recipe"] == s["to"] and r["t_done"] > s["t0"]),
                         None)
        around = [r["latency"] for r in res if s["t0"] - 0.5 <= r["t_arrival"] <= s["t1"] + 1.0]
        rows.append({**s, "switch_s": s["t1"] - s["t0"],
                     "to_first_result_s": (first_new["t_done"] - s["t0"]) if first_new else None,
                     "latency_around": around})
    return rows


def timeline_png(run: dict, path: Path) -> None:
    """Per-frame total latency over time, one colour per recipe, switches as lines."""
    res = run["results"]
    if not res:
        return
    W, H, m = 1100, 420, 50
    t_start = min(r["t_arrival"] for r in res)
    t_end = max(r["t_done"] for r in res)
    lat_max = max(max(r["latency"] for r in res) * 1.1, 1.0)
    img = np.full((H, W, 3), 255, np.uint8)

    def xy(t: float, lat: float) -> tuple[int, int]:
        return (int(m + (t - t_start) / (t_end - t_start) * (W - 2 * m)),
                int(H - m - lat / lat_max * (H - 2 * m)))

    cv2.rectangle(img, (m, m), (W - m, H - m), (0, 0, 0), 1)
    for s in run["switches"]:
        x0, x1 = xy(s["t0"], 0)[0], xy(s["t1"], 0)[0]
        cv2.rectangle(img, (x0, m), (max(x1, x0 + 1), H - m),
                      {"child": (200, 230, 200), "in-process": (200, 200, 255)}.get(
                          s["cold"], (220, 220, 220)), -1)
    colours = {"a": (200, 90, 30), "b": (30, 140, 30), "c": (30, 30, 200)}
    for r in res:
        cv2.circle(img, xy(r["t_arrival"], r["latency"]), 2, colours.get(r["recipe"], (0, 0, 0)),
                   -1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, "per-frame latency (ms) while switching recipes; grey: warm switch; "
                "cold switch (enrolment): green band in a child process, red band in-process",
                (m, 30), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"0 .. {lat_max:.0f} ms", (5, H - m + 15), font, 0.4, (0, 0, 0), 1)
    cv2.putText(img, f"{t_end - t_start:.0f} s; recipe a blue, b green, c red", (m, H - 15),
                font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switches", type=int, default=10, help="warm switches under load")
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between switches")
    ap.add_argument("--rate", type=float, default=5.0, help="camera frames per second")
    ap.add_argument("--size", type=int, default=512, help="frame width and height")
    ap.add_argument("--cold", type=int, default=2, help="cold enrolments per recipe")
    ap.add_argument("--warm", type=int, default=10, help="warm (cache) loads")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds before the first switch")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the recipes here")
    ap.add_argument("--png", type=Path, default=Path("out/bench_switch.png"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_switch_"))
    recipes = root / "recipes"
    t0 = time.perf_counter()
    for name, seed in (("a", 3000), ("b", 3100), ("c", 3200)):
        if not (recipes / name / "recipe.yaml").exists():
            make_bank_recipe(recipes / name, name, seed, args.size)
    r = load_recipe(recipes / "a")
    n_prompts = len(json.loads((recipes / "a" / "prompts" / "prompts.json").read_text())
                    ["annotations"])
    print(f"recipes in {recipes} ({time.perf_counter() - t0:.1f} s to render): "
          f"{len(r.classes)} classes, {n_prompts} prompts, 16 good parts, "
          f"{args.size}x{args.size} px\n")

    cold, warm, validate = [], [], []
    for name in ("a", "b"):
        for _ in range(args.cold):
            shutil.rmtree(recipes / name / CACHE_DIR, ignore_errors=True)
            cold.append(timed_load(recipes / name))
    for i in range(args.warm):
        warm.append(timed_load(recipes / "ab"[i % 2]))
        t = time.perf_counter()
        load_recipe(recipes / "ab"[i % 2])
        validate.append(time.perf_counter() - t)
    load_active(recipes / "c")  # c starts warm too; the cold switch removes its cache

    load_before = os.getloadavg()[0]
    run = run_service(root, args)
    load_after = os.getloadavg()[0]
    rows = analyse(run)
    warm_rows = [x for x in rows if not x["cold"]]
    cold_rows = {k: [x for x in rows if x["cold"] == k] for k in ("child", "in-process")}
    res = sorted(run["results"], key=lambda x: x["frame_id"])
    ids = [x["frame_id"] for x in res]
    gaps = sum(b - a - 1 for a, b in zip(ids, ids[1:], strict=False))
    c = run["counters"]
    all_lat = [x["latency"] for x in res]
    around_warm = [v for x in warm_rows for v in x["latency_around"]]

    print("| measurement | n | median | max |")
    print("|---|---|---|---|")
    print(f"| cold enrolment, load_active without cache (s) | {len(cold)} | {med(cold):.2f} | "
          f"{max(cold):.2f} |")
    print(f"| warm load, load_active from cache (s) | {len(warm)} | {med(warm):.3f} | "
          f"{max(warm):.3f} |")
    print(f"| of which validate + content hash (s) | {len(validate)} | {med(validate):.3f} | "
          f"{max(validate):.3f} |")
    sw = [x["switch_s"] for x in warm_rows]
    first = [x["to_first_result_s"] for x in warm_rows if x["to_first_result_s"] is not None]
    print(f"| switch under load, warm: request -> ack (s) | {len(sw)} | {med(sw):.3f} | "
          f"{max(sw):.3f} |")
    print(f"| switch under load, warm: request -> first result of the new recipe (s) | "
          f"{len(first)} | {med(first):.3f} | {max(first):.3f} |")
    for k, xs in cold_rows.items():
        for x in xs:
            print(f"| switch under load, cold, enrolment {k}: request -> ack (s) | 1 | "
                  f"{x['switch_s']:.2f} | {x['switch_s']:.2f} |")
    print()
    print("| frames under load | value |")
    print("|---|---|")
    print(f"| camera rate (Hz), frame size | {args.rate:g}, {args.size}x{args.size} |")
    print(f"| machine: CPUs, 1-min load average before / after the service run | "
          f"{os.cpu_count()}, {load_before:.1f} / {load_after:.1f} |")
    print(f"| frames in / results | {c.get('frames_in', 0)} / {c.get('results', 0)} |")
    print(f"| dropped (queue full), whole run | {c.get('dropped_queue', 0)} |")
    print(f"| dropped from request to ack + {SETTLE_S:g} s, warm switches | "
          f"{sum(x['dropped'] for x in warm_rows)} |")
    for k, xs in cold_rows.items():
        print(f"| dropped from request to ack + {SETTLE_S:g} s, cold switch, enrolment {k} | "
              f"{sum(x['dropped'] for x in xs)} |")
    # drops per second inside switch windows vs outside: foreign load drops frames too
    window = {k: (sum(x["dropped"] for x in xs), sum(x["switch_s"] + SETTLE_S for x in xs))
              for k, xs in {"warm": warm_rows, **cold_rows}.items()}
    inside_n = sum(n for n, _ in window.values())
    inside_s = sum(t for _, t in window.values())
    outside = (c.get("dropped_queue", 0) - inside_n) / max(run["seconds"] - inside_s, 1e-9)
    rates = ", ".join(f"{k} {n / t:.2f}" for k, (n, t) in window.items() if t)
    print(f"| drops per second: outside switches; inside switch windows ({'/'.join(window)}) | "
          f"{outside:.2f}; {rates} |")
    print(f"| dropped at shutdown | {c.get('dropped_shutdown', 0)} |")
    print(f"| gaps in frame ids of results | {gaps} |")
    print(f"| inspection errors | {c.get('inspect_errors', 0)} |")
    print(f"| total latency p50 / p99, all frames (ms) | {pct(all_lat, 50):.0f} / "
          f"{pct(all_lat, 99):.0f} |")
    print(f"| total latency p50 / p99, frames around warm switches (ms) | "
          f"{pct(around_warm, 50):.0f} / {pct(around_warm, 99):.0f} |")
    for k, xs in cold_rows.items():
        lat = [v for x in xs for v in x["latency_around"]]
        print(f"| total latency p50 / p99, frames during the cold switch, enrolment {k} (ms) | "
              f"{pct(lat, 50):.0f} / {pct(lat, 99):.0f} |")
    args.png.parent.mkdir(parents=True, exist_ok=True)
    timeline_png(run, args.png)
    print(f"\ntimeline: {args.png}")


if __name__ == "__main__":
    main()
