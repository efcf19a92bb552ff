"""Teach from the page: a box on a part becomes a prompt example, then the line switches.

The same code path as `inspector recipe add-prompt --switch`: `recipes.edit.add_prompt`
(all-or-nothing write, rev + 1, its checks and error messages) on the running recipe's
folder, then `Service.switch_recipe`, which enrols the new rev in a child process while
the old rev keeps inspecting and swaps only a fully ready recipe. A job runs on its own
thread; the page polls its stage. The job also notes when the first part judged by the new
rev arrives, which is the figure an operator cares about (click to effect).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from inspector.core.errors import InspectorError
from inspector.recipes.edit import NewClass, add_prompt
from inspector.runtime.service import Service
from inspector.web.live import LiveView, Part

log = logging.getLogger(__name__)
STAGES = ("adding the example", "enrolling and switching", "waiting for the first part", "done")


@dataclass
class TeachJob:
    """One teaching request and how far it got."""

    id: str
    user: str
    cls: str
    stage: str = STAGES[0]
    step: int = 0
    error: str = ""
    rev: int | None = None
    recipe: dict = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)
    switched_s: float | None = None  # click to the switch's ack
    first_part_s: float | None = None  # click to the first part judged by the new rev

    def view(self) -> dict:
        """The job as JSON for the page's progress bar."""
        return {"id": self.id, "stage": self.stage, "step": self.step, "steps": len(STAGES) - 1,
                "error": self.error, "rev": self.rev, "recipe": self.recipe, "cls": self.cls,
                "elapsed_s": round(time.monotonic() - self.t0, 2),
                "switched_s": self.switched_s, "first_part_s": self.first_part_s}


class Teacher:
    """Runs teaching jobs one at a time (a second waits: edits of one recipe never race)."""

    def __init__(self, service: Service, live: LiveView, work_dir: Path) -> None:
        self.service, self.live, self.work_dir = service, live, Path(work_dir)
        self.jobs: dict[str, TeachJob] = {}
        self._one = threading.Lock()

    def start(self, user: str, part: Part, box: tuple[float, float, float, float], cls: str,
              new_class: NewClass | None, mask_png: bytes | None = None) -> TeachJob:
        """Begin a job on its own thread; its progress is in `jobs[id]`. `mask_png`: the
        brushed defect pixels (PNG of the frame's size, nonzero = defect)."""
        job = TeachJob(uuid.uuid4().hex[:12], user, cls)
        self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, part, box, new_class, mask_png),
                         name=f"teach-{job.id}", daemon=True).start()
        return job

    def _run(self, job: TeachJob, part: Part, box: tuple[float, float, float, float],
             new_class: NewClass | None, mask_png: bytes | None) -> None:
        with self._one:
            try:
                self._teach(job, part, box, new_class, mask_png)
            except (InspectorError, ValueError, FileNotFoundError, OSError) as exc:
                job.error = "; ".join(getattr(exc, "errors", None) or [str(exc)])
                log.warning("teach %s: %s", job.id, job.error)
            except Exception as exc:  # reported to the page; the service goes on
                job.error = f"{type(exc).__name__}: {exc}"
                log.exception("teach %s failed", job.id)

    def _teach(self, job: TeachJob, part: Part, box: tuple[float, float, float, float],
               new_class: NewClass | None, mask_png: bytes | None) -> None:
        assert self.service.pipeline is not None
        folder = self.service.pipeline.active.recipe.folder
        assert folder is not None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        image = self.work_dir / f"{part.result.event_id[:12]}.png"
        if not cv2.imwrite(str(image), part.image):
            raise OSError(f"cannot write {image}")
        mask = None
        if mask_png is not None:
            mask = self.work_dir / f"{part.result.event_id[:12]}-mask.png"
            mask.write_bytes(mask_png)  # add_prompt checks its size and its pixels
        summary = add_prompt(folder, image, box, job.cls, mask=mask, new_class=new_class,
                             frame=True)
        job.rev = summary.rev
        job.stage, job.step = STAGES[1], 1
        job.recipe = self.service.switch_recipe(folder.name, summary.rev)
        job.switched_s = round(time.monotonic() - job.t0, 2)
        job.stage, job.step = STAGES[2], 2
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(p.result.recipe.sha256 == job.recipe.get("sha256")
                   for p in self.live.latest().values()):
                job.first_part_s = round(time.monotonic() - job.t0, 2)
                break
            time.sleep(0.02)
        job.stage, job.step = STAGES[3], 3
