"""Issue 16, deliverable 4: YAML is parsed safely. An alias bomb, non-UTF-8 or binary
input and huge values are reported as file:line errors, fast, by `inspector validate`,
`recipe validate` and `recipe list`; no traceback, no memory blow-up."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from inspector.core.validation import InvalidFile
from inspector.recipes.recipe import load_recipe
from tests.helpers.files import write_config, write_recipe
from tests.helpers.hardening import cli

BOMB = """bomb:
  a: &a ["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "x", "x", "x", "x", "x", "x", "x", "x"]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
  i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def _bomb_recipe(tmp_path: Path) -> Path:
    folder = write_recipe(tmp_path / "recipes" / "bomb")
    text = (folder / "recipe.yaml").read_text()
    text = text.replace("classes:", BOMB.replace("bomb:", "x-bomb:") + "classes:", 1)
    text += "detector:\n  params: {weights: *i}\n"
    (folder / "recipe.yaml").write_text(text)
    return folder


def test_alias_bomb_is_refused_fast_with_its_line(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    folder = _bomb_recipe(tmp_path)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    with pytest.raises(InvalidFile) as info:
        load_recipe(folder)
    took = time.monotonic() - t0
    assert took < 2.0
    assert "alias bomb" in info.value.errors[0] and "recipe.yaml:" in info.value.errors[0]
    assert cli("validate", str(folder)) == 1
    assert cli("recipe", "validate", str(folder)) != 0
    err = capsys.readouterr().err
    assert err.count("alias bomb") == 2 and len(max(err.splitlines(), key=len)) < 400
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grown_mb < 200
    print(f"NOW alias bomb: refused in {took * 1000:.0f} ms with file:line, peak RSS "
          f"+{grown_mb:.0f} MB")


def test_non_utf8_and_binary_yaml_are_reported_by_line(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    good = write_recipe(tmp_path / "recipes" / "good")
    bad = write_recipe(tmp_path / "recipes" / "latin1")
    lines = (bad / "recipe.yaml").read_bytes().split(b"\n")
    lines[3] = b"product: Pr\xfcfteil"  # Latin-1, line 4
    (bad / "recipe.yaml").write_bytes(b"\n".join(lines))
    cfg = write_config(tmp_path / "station.yaml", good)
    assert cli("validate", str(bad)) == 1
    assert cli("recipe", "validate", str(bad)) != 0
    assert cli("recipe", "list", "--config", str(cfg)) == 0
    out = capsys.readouterr()
    assert out.err.count("recipe.yaml:4: not UTF-8 (byte 0xfc)") == 2, out.err
    assert "INVALID" in out.out and "not UTF-8" in out.out
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"station: x\n\x00\x01\x02")
    assert cli("validate", str(binary)) == 1
    assert "binary.yaml:2: binary data" in capsys.readouterr().err
    print("NOW non-UTF-8 YAML: 'recipe.yaml:4: not UTF-8 (byte 0xfc)' from validate, recipe "
          "validate and recipe list; binary: file:line, no traceback")


def test_errors_quote_a_huge_value_briefly_and_every_error_has_its_line(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = write_recipe(tmp_path / "recipes" / "good")
    cfg = write_config(tmp_path / "station.yaml", recipe, stats_interval_s=list(range(20_000)),
                       queues={"frames": "many", "results": -1})
    t0 = time.monotonic()
    assert cli("validate", str(cfg)) == 1
    assert time.monotonic() - t0 < 5
    err = capsys.readouterr().err
    errs = [ln for ln in err.splitlines() if ln.startswith("  ")]
    assert len(errs) == 3 and all("station.yaml:" in e for e in errs), err
    assert max(len(e) for e in errs) < 300
