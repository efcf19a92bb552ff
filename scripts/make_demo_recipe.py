"""Generate `recipes/demo/`: the recipe for the synthetic demo part.

Everything in the folder is rendered from fixed seeds by
inspector.acquisition.synthetic_parts, so running
this again reproduces the same bytes (and the same recipe sha256):

    .venv/bin/python scripts/make_demo_recipe.py [--out recipes/demo] [--size 512]

`--size` renders the same recipe for larger frames (benchmarks: scripts/bench_scaling.py),
with mm per pixel scaled so that the field of view stays 25.6 mm.

Prompt bank: 4 images, each with one defect of every class (so 4 examples per class, each
in a different place on the part). Good parts: 16 defect-free parts. The seeds are
disjoint from the ones scripts/eval_synthetic.py and the tests inspect.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from inspector.demo.recipe import SIZE, write_demo_recipe
from inspector.recipes.recipe import load_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("recipes/demo"))
    ap.add_argument("--size", type=int, default=SIZE, help="frame side in pixels")
    args = ap.parse_args()
    out: Path = args.out
    write_demo_recipe(out, args.size)
    recipe = load_recipe(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: recipe {recipe.id} rev {recipe.rev} sha256 {recipe.sha256[:12]}, "
          f"{size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
