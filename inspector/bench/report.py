"""Figures of an `inspector bench` run, and its files: bench.json, bench.md, latency.png.

Stages of one result, all from monotonic stamps (inspector.bench.run.COLUMNS):
wait (arrival -> taken by inference), preprocess, infer, decide, emit (decision ->
every sink done, outbox commit included), publish (commit -> PUBACK of `plc`, of
`result`). wait + preprocess + infer + decide + emit + publish plc is exactly the
latency to the reject gate (arrival -> PUBACK of `plc`), so the share of each stage
in its mean says where the time goes. Only results that arrived after the warm-up count.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict
from pathlib import Path

import numpy as np

from inspector.bench.measure import COLUMNS, SAMPLE_FIELDS
from inspector.evaluation.plotting import line_chart

RSS_GROWTH_LIMIT_PCT = 5.0
C = {name: i for i, name in enumerate(COLUMNS)}
# stage -> (label, start column, end column); "committed" is emitted, or the first
# PUBACK when it came before on_result (the commit happened before both)
STAGES = {
    "wait": ("wait (arrival -> inference)", "arrival", "queue"),
    "preprocess": ("preprocess", "queue", "preprocess"),
    "infer": ("infer (detector)", "preprocess", "infer"),
    "decide": ("decide", "infer", "decide"),
    "emit": ("emit (sinks, outbox commit)", "decide", "committed"),
    "publish_plc": ("publish plc (commit -> PUBACK)", "committed", "ack_plc"),
    "publish_result": ("publish result (commit -> PUBACK)", "committed", "ack_result"),
    "to_gate": ("to the reject gate (arrival -> PUBACK plc)", "arrival", "ack_plc"),
    "total": ("total (arrival -> PUBACK result)", "arrival", "ack_result"),
}
GATE_CHAIN = ("wait", "preprocess", "infer", "decide", "emit", "publish_plc")
# the detector's own split of `infer` (Detector.last_timing), where it reports one
INFER_SPLIT = {
    "infer_encode": ("- of which prompt encoder (backbone, tokens)", "encode_ms"),
    "infer_head": ("- of which prompt head (PQS) + masks, NMS", "head_ms"),
    "infer_unknown": ("- unknown branch (good-part bank), in its own thread beside the "
                      "prompt detector", "unknown_ms"),
}


def machine() -> dict:
    """CPU model, cores, memory and library versions: the context of every figure."""
    import cv2
    import onnxruntime

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
            "memory_gb": mem_gb, "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__}


def _pstats(ms: np.ndarray) -> dict | None:
    ms = ms[~np.isnan(ms)]
    if not len(ms):
        return None
    return {"p50": round(float(np.percentile(ms, 50)), 3),
            "p99": round(float(np.percentile(ms, 99)), 3),
            "max": round(float(ms.max()), 3), "mean": round(float(ms.mean()), 3),
            "n": int(len(ms))}


def stage_ms(rows: np.ndarray) -> dict[str, np.ndarray]:
    """Per-result duration (ms, NaN where a stamp is missing) of every stage."""
    col = {name: rows[:, i] for name, i in C.items()}
    col["committed"] = np.fmin(col["emitted"], np.fmin(col["ack_plc"], col["ack_result"]))
    ms = {k: (col[b] - col[a]) * 1000.0 for k, (_, a, b) in STAGES.items()}
    return ms | {k: col[c] for k, (_, c) in INFER_SPLIT.items()}


def rss_figures(samples: np.ndarray, t_warm: float, t_stop: float) -> dict:
    """Steady RSS (median after warm-up), peak (VmHWM), growth: max RSS in the last
    10 % of the measured time against RSS at the end of the warm-up."""
    if not len(samples):
        return {"steady_mb": None, "peak_mb": None, "growth_pct": None}
    t, rss = samples[:, 0], samples[:, 2]
    after = (t >= t_warm) & (t <= t_stop)
    steady = float(np.median(rss[after])) if after.any() else float(rss[-1])
    at_warm = rss[after][0] if after.any() else rss[-1]
    last = after & (t >= t_stop - 0.1 * (t_stop - t_warm))
    end = float(rss[last].max()) if last.any() else float(rss[-1])
    return {"steady_mb": round(steady, 1), "peak_mb": round(float(samples[:, 3].max()), 1),
            "at_warmup_end_mb": round(float(at_warm), 1), "end_max_mb": round(end, 1),
            "growth_pct": round(100.0 * (end - at_warm) / at_warm, 2)}


def soak_verdict(figures: dict) -> dict:
    """Pass iff RSS growth <= 5 %, no result lost and the outbox empty at the end."""
    growth = figures["rss"]["growth_pct"]
    checks = {
        f"RSS growth <= {RSS_GROWTH_LIMIT_PCT:g} % after warm-up":
            bool(growth is not None and growth <= RSS_GROWTH_LIMIT_PCT),
        "no lost result (every event_id received)": bool(figures["lost"] == 0),
        "outbox empty at the end": bool(figures["outbox_pending"] == 0),
    }
    return {"pass": all(checks.values()), "checks": checks}


def build_report(raw: dict) -> dict:
    """bench.json's content from inspector.bench.run's measurements."""
    s = raw["settings"]
    t0 = raw["t0"]
    t_warm, t_stop = raw["t_warm"] - t0, raw["t_stop"] - t0
    rows = raw["rows"]
    arrival = rows[:, C["arrival"]] - t0
    after = arrival >= t_warm
    ms = stage_ms(rows)
    latency = {k: _pstats(v[after]) for k, v in ms.items()}
    gate_mean = (latency["to_gate"] or {}).get("mean")
    for k in (*GATE_CHAIN, *INFER_SPLIT):
        if latency[k] is not None and gate_mean:
            latency[k]["share_of_gate_pct"] = round(100.0 * latency[k]["mean"] / gate_mean, 1)
    emitted = rows[:, C["emitted"]] - t0
    window = max(t_stop - t_warm, 1e-9)
    counted = int(((emitted >= t_warm) & (emitted <= t_stop)).sum())
    samples = np.asarray(raw["samples"], float).reshape(-1, len(SAMPLE_FIELDS))
    in_window = (samples[:, 0] >= t_warm) & (samples[:, 0] <= t_stop) if len(samples) else []
    cpu = samples[in_window, 1] if len(samples) else np.array([])
    c = raw["counters"]
    alone = np.asarray(raw["alone_ms"], float)
    alone_st = _pstats(alone)
    total_p50 = (latency["total"] or {}).get("p50")
    figures = {
        "results": int(len(rows)), "results_after_warmup": int(after.sum()),
        "measured_s": round(window, 3),
        "throughput_per_s": round(counted / window, 3),
        "latency_ms": latency,
        "detector_alone_ms": alone_st,
        "overhead_ratio": (round(total_p50 / alone_st["p50"], 3)
                           if total_p50 and alone_st else None),
        "cpu_pct": {"mean": round(float(cpu.mean()), 1) if len(cpu) else None,
                    "max": round(float(cpu.max()), 1) if len(cpu) else None},
        "rss": rss_figures(samples, t_warm, t_stop),
        "frames_in": c.get("frames_in", 0),
        "dropped": {"queue_full": c.get("dropped_queue", 0),
                    "shutdown": c.get("dropped_shutdown", 0),
                    "no_free_buffer": max(raw["frames_started"] - c.get("frames_in", 0), 0)},
        "inspection_errors": c.get("inspect_errors", 0),
        "sink_errors": c.get("sink_errors", 0),
        "unacked_after_warmup": int(np.isnan(rows[after, C["ack_result"]]).sum()),
        "accepted": raw["accepted"], "received": raw["received"], "lost": raw["lost"],
        "outbox_pending": raw["outbox_pending"],
        "broker_restarts": len(raw["restarts_s"]),
        "broker_restart_failures": len(raw["failed_restarts_s"]),
    }
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()}
    report = {
        "schema": "inspector.bench/1", "config": config, "machine": machine(),
        "recipe": raw["recipe"], "figures": figures,
        "soak": soak_verdict(figures) if s.soak else None,
        "times_s": {"start": round(raw["t_start"] - t0, 3), "warmup_end": round(t_warm, 3),
                    "stop": round(t_stop, 3), "broker_restarts": raw["restarts_s"]},
        "timeline": {"fields": list(SAMPLE_FIELDS), "rows": samples.tolist()},
        "per_result": _per_result(arrival, rows, ms),
    }
    return report


def _per_result(arrival: np.ndarray, rows: np.ndarray, ms: dict) -> dict:
    """Columns per result (JSON null where unknown), for the plot and later analysis."""
    def clean(a: np.ndarray) -> list:
        return [None if math.isnan(v) else round(float(v), 3) for v in a]

    cols = {"t_s": clean(arrival), "camera": [int(v) for v in rows[:, C["camera"]]]}
    return cols | {f"{k}_ms": clean(v) for k, v in ms.items()}


def _fmt(st: dict | None, key: str) -> str:
    return "n/a" if not st else f"{st[key]:.1f}"


def markdown(report: dict) -> str:
    """The human summary: run, headline figures, stages, soak verdict."""
    cfg, f, m = report["config"], report["figures"], report["machine"]
    lat, rss, d = f["latency_ms"], f["rss"], f["dropped"]
    rate = f"{cfg['rate_hz']:g} Hz per camera" if cfg["rate_hz"] else "free-run"
    run = (f"{f['measured_s']:.0f} s after a {cfg['warmup_s']:g} s warm-up"
           if cfg["seconds"] else f"{cfg['parts']} parts")
    alone = f["detector_alone_ms"]

    def lat3(k: str) -> str:
        st = lat[k]
        return "n/a" if not st else f"{st['p50']:.1f} / {st['p99']:.1f} / {st['max']:.1f} ms"

    ratio = f["overhead_ratio"]
    rows = [
        ("throughput", f"{f['throughput_per_s']:.2f} parts/s "
                       f"({f['results_after_warmup']} results after warm-up)"),
        ("to the reject gate: arrival -> PUBACK(plc), p50 / p99 / max", lat3("to_gate")),
        ("end to end: arrival -> PUBACK(result), p50 / p99 / max", lat3("total")),
        ("detector alone, p50 / p99",
         "n/a" if not alone else f"{alone['p50']:.1f} / {alone['p99']:.1f} ms "
                                 f"({alone['n']} frames)"),
        ("pipeline overhead: end-to-end p50 / detector-alone p50",
         "n/a" if ratio is None else f"{ratio:.2f} (goal <= 1.2)"),
        ("CPU, mean / max (100 % = one core)",
         f"{_num(f['cpu_pct']['mean'])} / {_num(f['cpu_pct']['max'])} %"),
        ("RSS steady (median) / peak", f"{_num(rss['steady_mb'])} / {_num(rss['peak_mb'])} MB"),
        ("RSS growth after warm-up", f"{_num(rss['growth_pct'], '+.2f')} %"),
        ("frames dropped: queue full / shutdown / no free buffer",
         f"{d['queue_full']} / {d['shutdown']} / {d['no_free_buffer']}"),
        ("inspection errors / sink errors", f"{f['inspection_errors']} / {f['sink_errors']}"),
        ("results received by the subscriber",
         f"{f['received']}/{f['accepted']} (lost {f['lost']})"),
        ("outbox rows pending at the end", str(f["outbox_pending"])),
        ("broker restarts", str(f["broker_restarts"])
         + (f" ({f['broker_restart_failures']} failed)" if f["broker_restart_failures"] else "")),
    ]
    what = _what(cfg, rate)
    rec = report["recipe"]
    lines = [f"### inspector bench: {what}, recipe {rec['id']} rev {rec['rev']}", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python "
             f"{m['python']}, numpy {m['numpy']}, onnxruntime {m['onnxruntime']}, "
             f"OpenCV {m['opencv']}. Run: {run}, {_cameras(cfg)}, archive "
             f"{'on' if cfg['archive'] else 'off'}.", "",
             "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "| stage | p50 ms | p99 ms | max ms | mean ms | share of mean latency to "
                  "the gate |", "|---|---:|---:|---:|---:|---:|"]
    labels = {k: v[0] for k, v in STAGES.items()}
    split = {k: v[0] for k, v in INFER_SPLIT.items() if lat.get(k)}
    order = list(STAGES)
    order[order.index("infer") + 1:order.index("infer") + 1] = list(split)
    for key in order:
        label, st = labels.get(key) or split[key], lat[key]
        share = st.get("share_of_gate_pct") if st else None
        lines.append(f"| {label} | {_fmt(st, 'p50')} | {_fmt(st, 'p99')} | {_fmt(st, 'max')} "
                     f"| {_fmt(st, 'mean')} | {'' if share is None else f'{share:.1f} %'} |")
    soak = report.get("soak")
    if soak is not None:
        lines += ["", f"**Soak: {'PASS' if soak['pass'] else 'FAIL'}**", ""]
        lines += [f"- {'pass' if ok else 'FAIL'}: {name}" for name, ok in soak["checks"].items()]
    return "\n".join(lines) + "\n"


def _what(cfg: dict, rate: str = "") -> str:
    """The run's cameras and frames, for titles."""
    if cfg.get("config"):
        return f"station config {Path(cfg['config']).name}"
    return f"{cfg['cameras']} camera(s), {cfg['size']}x{cfg['size']}" + (f", {rate}" if rate
                                                                       else "")


def _cameras(cfg: dict) -> str:
    """Which cameras fed the run, in words."""
    if cfg.get("config"):
        return f"the cameras of station config {cfg['config']}"
    if cfg.get("camera") == "genicam":
        return "GenICam camera(s)"
    return f"synthetic camera(s), distinct parts per camera {cfg['distinct'] or 'all'}"


def _num(v: float | None, spec: str = ".0f") -> str:
    return "n/a" if v is None else format(v, spec)


def latency_png(report: dict, path: Path) -> Path:
    """Latency of every result over time (total and infer), broker restarts marked."""
    pr = report["per_result"]
    t = np.asarray(pr["t_s"], float)
    series = {}
    for key, name in (("total_ms", "total to PUBACK"), ("infer_ms", "infer")):
        y = np.asarray([np.nan if v is None else v for v in pr[key]], float)
        ok = ~np.isnan(y)
        series[name] = (t[ok], y[ok])
    ys = np.concatenate([y for _, y in series.values()])
    times = report["times_s"]
    right = max(float(t.max()) if len(t) else 0.0, times["stop"])
    cfg = report["config"]
    x_top, x_ticks = nice_axis(right)
    y_top, y_ticks = nice_axis(float(ys.max()) if len(ys) else 0.0)
    return line_chart(
        series, path, f"latency per result (ms): {_what(cfg)}",
        x_label="time (s)", y_label="ms", x_range=(0.0, x_top), y_range=(0.0, y_top),
        ticks=(x_ticks, y_ticks), size=(960, 480), thickness=1,
        tick_format=lambda v: f"{v:g}",
        vlines=[("warm-up end", [times["warmup_end"]], (127, 127, 127)),
                ("broker restart", times["broker_restarts"], (214, 39, 40))])


def nice_axis(v: float, most: int = 6) -> tuple[float, int]:
    """(axis end >= v, tick count): at most `most` intervals of a round step
    (1, 2, 2.5 or 5 x 10^k), so the labels are round and little of the axis is empty."""
    v = max(v, 1.0)
    mag = 10.0 ** math.floor(math.log10(v / most))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag * most >= v * 0.9999)
    n = max(math.ceil(v / step - 1e-9), 1)
    return round(n * step, 9), n + 1


def write_outputs(out: Path, report: dict) -> dict[str, Path]:
    """bench.json, bench.md and latency.png in `out`."""
    paths = {"json": out / "bench.json", "md": out / "bench.md", "png": out / "latency.png"}
    doc = json.dumps(report, separators=(",", ":"), allow_nan=False) + "\n"
    paths["json"].write_text(doc)
    paths["md"].write_text(markdown(report))
    latency_png(report, paths["png"])
    return paths
