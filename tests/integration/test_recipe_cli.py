"""`inspector recipe ...` end to end: new, import-coco, validate, enroll, show, list, switch."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from inspector.acquisition.synthetic_parts import (
    DEFECT_KINDS,
    frame_rng,
    good_part,
    render_part,
    save_coco,
    write_png,
)
from inspector.cli.main import main
from inspector.recipes.recipe import load_recipe
from tests.helpers.files import write_config
from tests.helpers.recipe_factory import snapshot


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    samples = [render_part(frame_rng(920, i), 128, 128,
                           defects=[DEFECT_KINDS[i % 5], DEFECT_KINDS[(i + 1) % 5]])
               for i in range(10)]
    return save_coco(tmp_path / "ds", samples)


def test_recipe_lifecycle(tmp_path: Path, dataset: Path, capsys) -> None:
    goods = []
    for i in range(5):
        goods.append(str(tmp_path / f"good{i}.png"))
        write_png(Path(goods[-1]), good_part(frame_rng(921, i), 128, 128))
    folder = tmp_path / "recipes" / "plate"
    assert main(["recipe", "new", str(folder), "--id", "plate", "--product", "Plate 1",
                 "--class", "scratch:11", "--class", "pit:12:minor", "--mm-per-px", "0.05",
                 "--normal", *goods]) == 0
    assert main(["recipe", "validate", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "warning: class 'scratch' has no prompt example" in err

    assert main(["recipe", "import-coco", str(folder), str(dataset), "--per-class", "2",
                 "--classes", "scratch,pit,crack", "--plc-code", "crack=13"]) == 0
    out = capsys.readouterr().out
    assert "rev 2; 6 prompt(s)" in out and "new classes: crack" in out
    r = load_recipe(folder)
    assert [c.name for c in r.classes] == ["scratch", "pit", "crack"] and r.rev == 2

    assert r.detector.kind == "select"  # the default with prompts
    assert main(["recipe", "enroll", str(folder), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "enrolled in" in out
    (chosen,) = [s for s in out.splitlines() if ": detector " in s]
    assert " kept (held-out box AP50: match confirmed by prompt-v3 " in chosen
    assert ", prompt-v2 heads " in chosen and ", prompt-v3 heads " in chosen
    assert main(["recipe", "enroll", str(folder), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "cache is fresh" in out and chosen in out  # the choice travels in the cache

    sheet = tmp_path / "sheet.png"
    assert main(["recipe", "show", str(folder), "--out", str(sheet)]) == 0
    img = cv2.imread(str(sheet))
    assert img is not None and img.shape[0] > 3 * 136 and img.shape[1] > 2 * 136

    assert main(["recipe", "list", str(folder.parent)]) == 0
    row = next(s for s in capsys.readouterr().out.splitlines() if "| plate |" in s)
    assert f"| plate | plate | 2 | 3 | 6 | 5 | {r.sha256[:12]} | fresh |" in row


def test_bad_inputs_exit_nonzero_and_change_nothing(tmp_path: Path, capsys) -> None:
    from tests.helpers.recipe_factory import make_recipe

    folder = make_recipe(tmp_path / "recipes" / "r", "r", kinds=("pit",))
    before = snapshot(folder)
    assert main(["recipe", "add-prompt", str(folder), str(tmp_path / "none.png"),
                 "--box", "1,2,3,4", "--class", "pit"]) == 2
    assert "none.png: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["recipe", "add-prompt", str(folder), "x.png", "--box", "1,2,3", "--class", "p"])
    assert "expected x,y,w,h" in capsys.readouterr().err
    (folder / "recipe.yaml").write_text((folder / "recipe.yaml").read_text() + "colour: red\n")
    before["recipe.yaml"] = (folder / "recipe.yaml").read_bytes()
    assert main(["recipe", "validate", str(folder)]) == 1
    err = capsys.readouterr().err
    n = len((folder / "recipe.yaml").read_text().splitlines())
    assert f"recipe.yaml:{n}: colour: unknown key" in err
    assert snapshot(folder) == before
    assert main(["recipe", "list", str(folder.parent)]) == 0
    assert "INVALID:" in capsys.readouterr().out


def test_switch_without_a_running_service(tmp_path: Path, capsys) -> None:
    from tests.helpers.recipe_factory import make_recipe

    folder = make_recipe(tmp_path / "recipes" / "r", "r", kinds=("pit",))
    cfg = write_config(tmp_path / "station.yaml", folder)
    assert main(["recipe", "switch", "r", "--config", str(cfg)]) == 3
    assert "no running inspector service" in capsys.readouterr().err


def _ack(out: str) -> dict:
    """The ack line the CLI prints (log lines may come before it on stdout)."""
    return json.loads([s for s in out.splitlines() if s.startswith("{")][-1])


def test_switch_through_the_cli_reports_the_ack(tmp_path: Path, capsys) -> None:
    from inspector.config.station import load_config
    from inspector.runtime.service import Service
    from tests.helpers.recipe_factory import make_recipe

    root = tmp_path / "recipes"
    make_recipe(root / "a", "a", kinds=("pit",))
    make_recipe(root / "b-folder", "b", kinds=("pit",), rev=3)
    cfg = write_config(tmp_path / "station.yaml", root / "a", console=False,
                       cameras=[{"name": "cam0", "source": {"kind": "synthetic", "seed": 1,
                                                            "width": 128, "height": 128,
                                                            "rate_hz": 5}}])
    svc = Service(load_config(cfg))
    svc.start()
    try:
        assert main(["recipe", "switch", "b", "--config", str(cfg)]) == 0  # found by id
        ack = _ack(capsys.readouterr().out)
        assert ack["ok"] is True and ack["recipe"]["id"] == "b" and ack["recipe"]["rev"] == 3
        assert main(["recipe", "switch", "a", "--rev", "7", "--config", str(cfg)]) == 1
        ack = _ack(capsys.readouterr().out)
        assert ack == {"ok": False, "error": "recipe 'a' is at rev 1, not 7",
                       "seconds": ack["seconds"]}
        assert main(["recipe", "switch", "../a", "--config", str(cfg)]) == 1
        assert "not a valid recipe name" in capsys.readouterr().out
        assert svc.pipeline.active.recipe.id == "b"
        assert main(["recipe", "list", "--config", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert "| * | b-folder | b | 3 |" in out and "active in the running service: b rev 3" in out
    finally:
        svc.stop()
