"""Evaluation of the visual-prompt detector with the protocol of docs/DESIGN.md.

`protocol` draws the prompts (k <= 4 per class, seeded, distinct train images),
`metrics` wraps pycocotools (box / mask AP50, per class, PR curves), `report` writes the
Markdown report and the PR-curve picture, `run` ties them to the detector (`inspector eval`).
"""
