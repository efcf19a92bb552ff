"""Helpers shared by the prompt-detector tests: a small exported model folder, and
prompt examples cut from synthetic parts (`synthetic_prompts`).

`tiny_model` exports an untrained net (ImageNet backbone, random heads, fixed seed)
at a small input size; tests that only need working graphs use it. It needs torch; the
runtime-only tests fall back to the shipped model in engines/ when torch is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "engines" / "prompt-v2"
DATA = REPO.parent / "shared" / "data"
SIZE = 160  # small input side (a multiple of 16) to keep tests fast


def synthetic_prompts(seed: int, kinds: tuple[str, ...], size: int) -> list:
    """One PromptExample per kind (id `<kind>-1`): the defect of a synthetic part with only
    that kind, its box and mask; part i uses `frame_rng(seed, i)`."""
    from inspector.acquisition.synthetic_parts import frame_rng, render_part
    from inspector.inference.detectors.base import PromptExample

    out = []
    for i, kind in enumerate(kinds):
        img, truths = render_part(frame_rng(seed, i), size, size, defects=[kind])
        t = truths[0]
        out.append(PromptExample(f"{kind}-1", kind, img, tuple(float(v) for v in t.bbox),
                                 t.mask))
    return out


def export_tiny(folder: Path, head_input: str = "tokens", size_prior: bool = False) -> Path:
    """An exported untrained model in `folder` (torch needed)."""
    import torch

    from inspector.training.episodes import Source
    from inspector.training.export import export, write_files_manifest
    from inspector.training.prompt_net import NetConfig, PromptDetectorNet
    from inspector.training.train import TrainConfig, save

    torch.manual_seed(0)
    net = PromptDetectorNet(NetConfig(head_input=head_input, objectness=head_input != "tokens",
                                      size_prior=size_prior))

    save(net, folder, {"note": "untrained test model"}, TrainConfig(),
         {"sources": [Source("test", "synthetic").__dict__], "split": "none"})
    export(net, folder, SIZE)
    write_files_manifest(folder)
    return folder


_EXPORTED: dict[str, Path] = {}  # one export per test session, shared by the modules


def tiny_model(tmp_path_factory) -> Path:
    """For a fixture: the tiny export (skips without torch)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    if "tiny" not in _EXPORTED:
        _EXPORTED["tiny"] = export_tiny(tmp_path_factory.mktemp("tiny-model"))
    return _EXPORTED["tiny"]


def runtime_model(tmp_path_factory) -> tuple[Path, int]:
    """(model folder, input size): the tiny export when torch is there, else the shipped one."""
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        if not (SHIPPED / "head.onnx").is_file():
            pytest.skip("neither torch (to export a test model) nor engines/prompt-v2")
        return SHIPPED, 320
    return tiny_model(tmp_path_factory), SIZE
