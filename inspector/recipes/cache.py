"""Generated enrolment cache of a recipe, so that switching to a known recipe is instant.

`<recipe>/cache/enrolled.npz` holds the arrays of `Detector.enrolled_state()` (saved
and loaded with allow_pickle=False), `<recipe>/cache/enrolled.json` says what they were
built from: the detector kind, the model's sha256 before enrolment (code, params,
weights), the recipe's content hash (which excludes cache/) and the npz file's own
sha256. Any mismatch, a missing or unreadable file, or a state the detector refuses
makes the cache stale: it is rebuilt by enrolling again, never used. So is a
provisional cache (an adaptation stopped by its time cap on a busy machine) at the next
load after the one it was written for. Both files are
written to a temporary name and renamed, the meta last, so a reader never sees a
half-written cache; a read-only recipe folder just goes without a cache.

The sha256 fields alone can be recomputed by whoever edits the arrays, so the meta also
carries an HMAC (inspector.recipes.cache_key) under a per-host secret in the state dir: a cache
edited by hand, or built on another host, fails it and is rebuilt, never used.

    outcome = enroll_cached(recipe, detector, progress=True)   # hit, or enrol + write

For a switch while the line runs, enroll_isolated() enrols a cache miss in a child
process (its own interpreter: no GIL shared with inspection) and then loads the cache
it wrote.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.core.atomic import write_atomic as _write_atomic
from inspector.core.errors import InspectorError
from inspector.core.hashing import file_sha256 as _file_sha256
from inspector.core.validation import InvalidFile
from inspector.inference.detectors.base import Detector
from inspector.recipes.cache_key import sign, verify
from inspector.recipes.recipe import Recipe, content_hash, load_normals, load_prompts

log = logging.getLogger(__name__)
FORMAT = "inspector.recipe-cache/1"
CACHE_DIR = "cache"
STATE_FILE = "enrolled.npz"
META_FILE = "enrolled.json"


class RecipeChanged(InspectorError, ValueError):
    """The recipe's files changed while it was being enrolled; its hash no longer fits."""


@dataclass
class CacheOutcome:
    """How a detector got its enrolment: from the cache (`hit`) or by enrolling."""

    hit: bool
    reason: str  # why the cache was not used (empty on a hit)
    seconds: float  # load time on a hit, enrolment time otherwise
    written: bool = False  # a fresh cache was written after enrolling
    path: Path | None = None


def detector_for(recipe: Recipe) -> Detector:
    """The (not yet enrolled) detector a service builds for `recipe`: the same everywhere a
    cache is written or checked (CLI, child process, service), so the keys agree."""
    from inspector.inference.detectors import build_detector

    return build_detector(recipe.detector, recipe.unknown,
                          {c.name: c.threshold for c in recipe.classes})


def cache_paths(recipe: Recipe) -> tuple[Path, Path]:
    """Paths of the recipe's cached enrolment arrays (.npz) and their meta (.json)."""
    folder = recipe.folder / CACHE_DIR
    return folder / STATE_FILE, folder / META_FILE




def expected_key(recipe: Recipe, detector: Detector) -> dict:
    """What a cache must have been built from to be used for `recipe` with `detector`.

    Call before enrolling: a detector's model_sha256 may fold in its enrolled state.
    """
    return {"format": FORMAT, "detector": detector.kind, "model_sha256": detector.model_sha256,
            "recipe_sha256": recipe.sha256}


def _read_meta(recipe: Recipe, detector: Detector, provisional_ok: bool = False
               ) -> tuple[dict, str]:
    """The cache's meta and an empty string if it fits, else ({}, why not).

    A provisional cache (Detector.provisional: its enrolment was cut short) fits only when
    `provisional_ok`: right after the enrolment that wrote it, never at a later one.
    """
    state_file, meta_file = cache_paths(recipe)
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, "no cache"
    except (OSError, ValueError) as exc:
        return {}, f"unreadable meta {meta_file.name}: {exc}"
    if not isinstance(meta, dict):
        return {}, f"unreadable meta {meta_file.name}: not an object"
    for key, want in expected_key(recipe, detector).items():
        if meta.get(key) != want:
            return {}, f"stale: {key} changed"
    if not state_file.is_file():
        return {}, f"missing {state_file.name}"
    why = verify(meta)
    if why:
        return {}, why
    if meta.get("provisional") and not provisional_ok:
        return {}, "provisional: its adaptation stopped at the time cap"
    return meta, ""


def check(recipe: Recipe, detector: Detector) -> str:
    """Empty string when a usable cache exists, else why not (cheap: reads the meta only)."""
    return _read_meta(recipe, detector)[1]


def load(recipe: Recipe, detector: Detector, provisional_ok: bool = False) -> str:
    """Restore `detector` from the cache; empty string on success, else why not.

    On failure the detector may be partly restored: enrol it again (enroll_cached does).
    """
    meta, why = _read_meta(recipe, detector, provisional_ok)
    if why:
        return why
    state_file = cache_paths(recipe)[0]
    try:
        data = state_file.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("state_sha256"):
            return f"corrupt: {state_file.name} does not match its sha256"
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
        detector.load_enrolled_state(state)
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        return f"unusable: {exc}"
    if meta.get("enrolled_model_sha256") not in (None, detector.model_sha256):
        return "unusable: restored detector differs from the enrolled one"
    return ""


def save(recipe: Recipe, detector: Detector, key: dict) -> Path | None:
    """Write the detector's enrolled state under `key`; None when it is not cacheable."""
    state = detector.enrolled_state()
    if state is None:
        return None
    state_file, meta_file = cache_paths(recipe)
    state_file.parent.mkdir(exist_ok=True)
    meta_file.unlink(missing_ok=True)  # an old meta must never vouch for the new arrays
    _write_atomic(state_file, lambda f: np.savez(f, **state))
    meta = {
        **key,
        "recipe": {"id": recipe.id, "rev": recipe.rev},
        "enrolled_model_sha256": detector.model_sha256,
        "state_sha256": _file_sha256(state_file),
        "provisional": detector.provisional,
        "arrays": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in state.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        meta["hmac"] = sign(meta)
    except OSError as exc:  # no key to sign with: a cache nobody can vouch for is useless
        state_file.unlink(missing_ok=True)
        raise OSError(f"no cache key: {exc}") from exc
    _write_atomic(meta_file, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return state_file


def enroll_cached(
    recipe: Recipe, detector: Detector, progress: bool = False, rebuild: bool = False
) -> CacheOutcome:
    """Restore `detector` from a fresh cache, or enrol it and write the cache.

    Raises what enrolment raises (InvalidFile for unreadable images, ValueError), and
    RecipeChanged when the recipe's files changed during enrolment.
    """
    key = expected_key(recipe, detector)
    t0 = time.monotonic()
    why = "rebuild requested" if rebuild else load(recipe, detector)
    if not why:
        return CacheOutcome(True, "", time.monotonic() - t0, path=cache_paths(recipe)[0])
    log.info("recipe %s rev %s: enrolling (%s)", recipe.id, recipe.rev, why)
    t0 = time.monotonic()
    detector.enroll(load_prompts(recipe), load_normals(recipe), progress=progress)
    seconds = time.monotonic() - t0
    if detector.provisional:
        log.warning("recipe %s rev %s: the adaptation stopped at its time cap "
                    "(detector.params.adapt_max_seconds); inspecting with it now, and "
                    "enrolling again at the next load", recipe.id, recipe.rev)
    if content_hash(recipe.folder) != recipe.sha256:
        raise RecipeChanged(f"{recipe.folder}: recipe files changed while enrolling; "
                            "load it again")
    outcome = CacheOutcome(False, why, seconds)
    try:
        outcome.path = save(recipe, detector, key)
        outcome.written = outcome.path is not None
    except OSError as exc:  # e.g. a read-only recipe folder: run without a cache
        log.warning("recipe %s: cannot write cache: %s", recipe.id, exc)
    return outcome


# --- enrolment beside a running line ----------------------------------------------------
WORKER_NICE = 0  # > 0 favours inspection on a saturated CPU, but can starve the enrolment
# Limits of the enrolment child (a hostile recipe must not take the line PC's memory or
# hold a switch for long); the demo recipe peaks near 2.4 GB of address space.
ENROL_MEMORY_MB = int(os.environ.get("INSPECTOR_ENROL_MEMORY_MB", "6144"))
ENROL_TIMEOUT_S = float(os.environ.get("INSPECTOR_ENROL_TIMEOUT_S", "600"))


def _child_limits() -> None:
    """In the enrolment child, first thing: cap its address space and CPU time (set by
    the child itself: a preexec_fn is unsafe in the threaded service)."""
    import resource

    mem = ENROL_MEMORY_MB * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    cpu = int(ENROL_TIMEOUT_S) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))


def enroll_isolated(recipe: Recipe, detector: Detector, timeout: float | None = None
                    ) -> CacheOutcome:
    """enroll_cached() for a switch while the line runs.

    A cache miss is enrolled by a child process (niced by WORKER_NICE), which writes
    the cache; this process then loads it. Inspection never waits for the GIL behind an
    enrolment. Falls back to enrolling here when the detector is not cacheable or the
    child could not write a cache (e.g. a read-only folder).
    """
    t0 = time.monotonic()
    why = load(recipe, detector)
    if not why:
        return CacheOutcome(True, "", time.monotonic() - t0, path=cache_paths(recipe)[0])
    if not detector.cacheable:
        return enroll_cached(recipe, detector)
    log.info("recipe %s rev %s: enrolling in a child process (%s)", recipe.id, recipe.rev, why)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    timeout = ENROL_TIMEOUT_S if timeout is None else timeout
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "inspector.recipes.cache", str(recipe.folder),
             str(WORKER_NICE)], capture_output=True, text=True, timeout=timeout, env=env,
            check=False)
    except subprocess.TimeoutExpired:
        raise ValueError(f"recipe {recipe.id}: enrolment took longer than {timeout:g} s and "
                         "was stopped; the running recipe stays") from None
    if proc.returncode < 0 or "MemoryError" in proc.stderr:
        raise ValueError(f"recipe {recipe.id}: enrolment stopped (exit {proc.returncode}; "
                         f"limits {ENROL_MEMORY_MB} MB, {ENROL_TIMEOUT_S:g} s); the running "
                         "recipe stays")
    if "Traceback (most recent call last)" in proc.stderr:  # a crash: its last line only
        last = [s for s in proc.stderr.splitlines() if s.strip()][-1].strip()
        log.error("recipe %s: enrolment child crashed:\n%s", recipe.id, proc.stderr[-4000:])
        raise ValueError(f"recipe {recipe.id}: enrolment failed: {last[:200]}; the running "
                         "recipe stays")
    if proc.returncode in (1, 2):  # the recipe cannot be enrolled: say why, change nothing
        lines = [s for s in proc.stderr.splitlines() if s.strip()] or ["enrolment failed"]
        raise InvalidFile(recipe.folder, lines) if proc.returncode == 2 else ValueError(
            "\n".join(lines))
    after = (load(recipe, detector, provisional_ok=True) if proc.returncode == 0
             else "child wrote no cache")
    if after:  # the child could not help: enrol here
        log.warning("recipe %s: enrolling in this process (%s; child exit %s: %s)", recipe.id,
                    after, proc.returncode, proc.stderr.strip()[-300:])
        return enroll_cached(recipe, detector)
    return CacheOutcome(False, f"{why}; enrolled in a child process", time.monotonic() - t0,
                        written=True, path=cache_paths(recipe)[0])


def _worker(folder: str, nice: str) -> int:
    """Child process of enroll_isolated: enrol `folder` and write its cache.

    Exit 0: cache fresh; 1: the detector refused the recipe; 2: an invalid recipe or
    image (errors on stderr, one per line); 3: enrolled but no cache written.
    """
    from inspector.recipes.recipe import load_recipe

    _child_limits()
    os.nice(int(nice))
    try:
        recipe = load_recipe(Path(folder))
        got = enroll_cached(recipe, detector_for(recipe))
    except InvalidFile as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0 if got.hit or got.written else 3


if __name__ == "__main__":
    sys.exit(_worker(*sys.argv[1:3]))
