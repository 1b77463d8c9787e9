"""U-Net and DeepLabV3+ on any registered backbone, with segmentation-models-pytorch's decoders, and
DeepLabV3 with torchvision's ``DeepLabHead``.

smp's decoders read a list of encoder features ``[x, stride 2, 4, 8, 16, 32]`` and the encoder's
``out_channels``; here the list is built from the backbone's stages and ``feature_info``:

- U-Net (``smp.decoders.unet.decoder.UnetDecoder``): the stride 4-32 stages (and stride 2 when the
  backbone has one) as skips. Each decoder block upsamples to its skip's real size; the last one to
  the input size. Decoder widths by the stride a block outputs: 16→256, 8→128, 4→64, 2→32, 1→16
  (smp's defaults; a backbone without a stride-2 stage, e.g. ConvNeXt, has one block fewer).
- DeepLabV3+ (``DeepLabV3PlusDecoder``'s ASPP and fusion blocks): smp dilates its encoders to
  output stride 16; a generic backbone cannot be dilated safely (ConvNeXt's 2x2 stride-2
  downsampling, BasicBlocks), so ASPP runs on the stride-32 stage instead, with atrous rates
  (3, 6, 9): the same field of view in input pixels as the paper's (6, 12, 18) at stride 16. Its
  output is upsampled (bilinear) to the stride-4 stage's size, fused with it, and the logits are
  upsampled x4 to the input size.
- DeepLabV3 (torchvision's ``DeepLabHead``: ASPP, 3x3 conv, BatchNorm, ReLU, 1x1 classifier) on
  the deepest (stride-32) stage, atrous rates (3, 6, 9) for the reason above (torchvision's (12, 24,
  36) are for its dilated stride-8 ResNets); the logits are upsampled to the input size.

Input sizes: any. The image is zero-padded on the right and bottom to a multiple of 32 (the
deepest stride used; nothing is padded when H and W are multiples of 32), and the logits are
cropped back, so ``forward(x (N, C, H, W))`` → logits ``(N, num_classes, H, W)``, aligned pixel for
pixel. Zero after normalisation is the dataset mean colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base import SegmentationHead
from segmentation_models_pytorch.base import initialization as smp_init
from segmentation_models_pytorch.decoders.deeplabv3.decoder import DeepLabV3PlusDecoder
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder
from torch import nn

from densecnn.backbones.base import Backbone
from densecnn.backbones.registry import backbone_for
from densecnn.checkpoint import CheckpointMeta, load_head_checkpoint, load_into, load_state_dict
from densecnn.errors import UsageError
from densecnn.tasks.builders import BuildRequest, register_builder
from densecnn.zoo.heads import DEEPLAB_STRIDES, DEEPLABV3_STRIDES, UNET_STRIDES

PAD_TO = 32
_UNET_WIDTHS = {16: 256, 8: 128, 4: 64, 2: 32, 1: 16}


class SegmentationModel(nn.Module):
    """``backbone`` → ``decoder([x, *stages])`` → ``segmentation_head`` → logits at input size.

    ``indices`` picks the backbone stages the decoder reads (shallow to deep). Names follow smp
    (``decoder``, ``segmentation_head``), with ``backbone`` in place of smp's ``encoder``.
    """

    def __init__(
        self, backbone: Backbone, decoder: nn.Module, segmentation_head: nn.Module, *, indices: Sequence[int]
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.segmentation_head = segmentation_head
        self.indices = tuple(indices)
        smp_init.initialize_decoder(self.decoder)
        smp_init.initialize_head(self.segmentation_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % PAD_TO, -w % PAD_TO
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        stages = self.backbone(x)
        y = self.segmentation_head(self.decoder([x, *(stages[i] for i in self.indices)]))
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y[..., :h, :w]


class DeepLabV3PlusFusion(DeepLabV3PlusDecoder):
    """smp's DeepLabV3+ decoder (``aspp``, ``block1``, ``block2``) reading ``[x, stride 4, stride 32]``;
    the ASPP output is resized to the stride-4 map's size rather than by a fixed factor."""

    def __init__(
        self,
        *,
        low_channels: int,
        high_channels: int,
        out_channels: int,
        atrous_rates: Sequence[int],
        separable: bool,
        dropout: float,
    ) -> None:
        super().__init__(
            encoder_channels=(0, 0, low_channels, high_channels),
            encoder_depth=4,
            out_channels=out_channels,
            atrous_rates=tuple(atrous_rates),
            output_stride=16,
            aspp_separable=separable,
            aspp_dropout=dropout,
        )
        del self.up  # fixed-factor upsampling; forward resizes to the skip's size instead

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        low, high = features[1], features[-1]
        aspp = self.aspp(high)
        aspp = F.interpolate(aspp, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.block2(torch.cat([aspp, self.block1(low)], dim=1))


def build_unet(
    backbone: str | Backbone,
    num_classes: int,
    *,
    pretrained_backbone: bool | Path = False,
    in_channels: int = 3,
    decoder_channels: Sequence[int] | None = None,
    decoder_attention_type: str | None = None,
) -> SegmentationModel:
    """U-Net on ``backbone`` (a registry name, or a built Backbone used as is):
    ``(N, in_channels, H, W)`` → logits ``(N, num_classes, H, W)``.

    ``decoder_channels``: one width per decoder block, deep to shallow (default: see the module
    docstring). UsageError when the backbone lacks stride 4/8/16/32 stages.
    """
    body = backbone_for(
        backbone, head="unet", strides=UNET_STRIDES, pretrained=pretrained_backbone, in_channels=in_channels
    )
    strides = [2, *UNET_STRIDES] if 2 in body.strides else list(UNET_STRIDES)
    indices = body.require(head="unet", strides=strides)
    targets = [*strides[-2::-1], 1]  # the stride each block upsamples to
    widths = list(decoder_channels) if decoder_channels is not None else [_UNET_WIDTHS[s] for s in targets]
    if len(widths) != len(targets):
        raise UsageError(f"decoder_channels needs {len(targets)} widths on {backbone}, got {len(widths)}.")
    decoder = UnetDecoder(
        encoder_channels=[body.in_channels, *(body.feature_info[i].channels for i in indices)],
        decoder_channels=widths,
        n_blocks=len(widths),
        attention_type=decoder_attention_type,
    )
    head = SegmentationHead(in_channels=widths[-1], out_channels=num_classes, kernel_size=3)
    return SegmentationModel(body, decoder, head, indices=indices)


def build_deeplabv3plus(
    backbone: str | Backbone,
    num_classes: int,
    *,
    pretrained_backbone: bool | Path = False,
    in_channels: int = 3,
    decoder_channels: int = 256,
    atrous_rates: Sequence[int] = (3, 6, 9),
    aspp_separable: bool = True,
    aspp_dropout: float = 0.5,
) -> SegmentationModel:
    """DeepLabV3+ on ``backbone`` (a registry name, or a built Backbone used as is):
    ``(N, in_channels, H, W)`` → logits ``(N, num_classes, H, W)``.

    ASPP on the stride-32 stage, fused with the stride-4 stage (see the module docstring).
    UsageError when the backbone lacks stride 4 or 32 stages.
    """
    body = backbone_for(
        backbone,
        head="deeplabv3plus",
        strides=DEEPLAB_STRIDES,
        pretrained=pretrained_backbone,
        in_channels=in_channels,
    )
    indices = body.require(head="deeplabv3plus", strides=DEEPLAB_STRIDES)
    decoder = DeepLabV3PlusFusion(
        low_channels=body.feature_info[indices[0]].channels,
        high_channels=body.feature_info[indices[1]].channels,
        out_channels=decoder_channels,
        atrous_rates=atrous_rates,
        separable=aspp_separable,
        dropout=aspp_dropout,
    )
    head = SegmentationHead(in_channels=decoder_channels, out_channels=num_classes, kernel_size=1)
    return SegmentationModel(body, decoder, head, indices=indices)


class DeepLabV3Decoder(nn.Module):
    """torchvision's ``DeepLabHead`` up to its classifier (``aspp``, then ``block``: 3x3 conv, BN,
    ReLU) on the last of ``[x, *stages]``; the 1x1 classifier is the model's ``segmentation_head``."""

    def __init__(self, in_channels: int, out_channels: int, atrous_rates: Sequence[int]) -> None:
        from torchvision.models.segmentation.deeplabv3 import ASPP

        super().__init__()
        self.aspp = ASPP(in_channels, list(atrous_rates), out_channels)
        self.block = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.block(self.aspp(features[-1]))


def build_deeplabv3(
    backbone: str | Backbone,
    num_classes: int,
    *,
    pretrained_backbone: bool | Path = False,
    in_channels: int = 3,
    decoder_channels: int = 256,
    atrous_rates: Sequence[int] = (3, 6, 9),
) -> SegmentationModel:
    """DeepLabV3 on ``backbone`` (a registry name, or a built Backbone used as is):
    ``(N, in_channels, H, W)`` → logits ``(N, num_classes, H, W)``.

    torchvision's DeepLabHead on the stride-32 stage (see the module docstring). UsageError when the
    backbone has no stride-32 stage.
    """
    body = backbone_for(
        backbone,
        head="deeplabv3",
        strides=DEEPLABV3_STRIDES,
        pretrained=pretrained_backbone,
        in_channels=in_channels,
    )
    (index,) = body.require(head="deeplabv3", strides=DEEPLABV3_STRIDES)
    decoder = DeepLabV3Decoder(body.feature_info[index].channels, decoder_channels, atrous_rates)
    head = nn.Conv2d(decoder_channels, num_classes, 1)
    return SegmentationModel(body, decoder, head, indices=[index])


_BUILDERS = {"unet": build_unet, "deeplabv3plus": build_deeplabv3plus, "deeplabv3": build_deeplabv3}


def load_segmentation_checkpoint(path: Path) -> tuple[SegmentationModel, CheckpointMeta]:
    """A densecnn ``unet`` / ``deeplabv3plus`` / ``deeplabv3`` checkpoint rebuilt and loaded (eval mode).

    ``meta.extra["builder_kwargs"]``, if present, goes to the builder (e.g. ``decoder_channels``).
    """
    state, meta = load_head_checkpoint(path, archs=tuple(_BUILDERS), what="a U-Net or DeepLabV3(+)")
    kwargs: dict[str, Any] = dict(meta.extra.get("builder_kwargs", {}))
    model = _BUILDERS[meta.arch](meta.backbone, meta.num_classes, in_channels=meta.in_channels, **kwargs)
    return load_into(model, state, source=path, what=f"{meta.arch} on {meta.backbone}"), meta


def load_segmentation_state_dict(path: Path, arch: str, backbone: str, num_classes: int) -> SegmentationModel:
    """A plain state dict (``torch.save`` or ``.safetensors``, no densecnn metadata) of a ``unet`` /
    ``deeplabv3plus`` on registry ``backbone`` with ``num_classes`` outputs, loaded (eval mode)."""
    state = load_state_dict(Path(path))
    model = _BUILDERS[arch](backbone, num_classes)
    head = state.get("segmentation_head.0.weight", state.get("segmentation_head.weight"))
    hint = (
        f"Its head has {head.shape[0]} outputs: pass --num-classes {head.shape[0]}."
        if head is not None and head.shape[0] != num_classes
        else "Check --model and --backbone against how the weights were trained."
    )
    what = f"{arch} on {backbone} with {num_classes} classes"
    return load_into(model, state, source=path, what=what, hint=hint)


@register_builder("segment", "densecnn")
def build_head_segmenter(request: BuildRequest) -> Any:
    """U-Net / DeepLabV3(+) on a registry backbone: from a densecnn checkpoint (the embedded
    person-unet is one), or a plain state dict with ``--backbone`` and the classes given."""
    from dataclasses import replace

    from densecnn.tasks.loading import needs_weights
    from densecnn.tasks.segment.semantic import SemanticSegmenter, checkpoint_segmenter, semantic_only
    from densecnn.zoo.segmentation import SEGMENTATION_PREPROCESS

    semantic_only(request)
    weights, spec, cfg = request.weights, request.spec, request.cfg
    if weights.meta is not None and weights.path is not None:
        model, meta = load_segmentation_checkpoint(weights.path)
        return checkpoint_segmenter(model, meta, request)
    if weights.path is not None and cfg.backbone is not None and request.class_names:
        model = load_segmentation_state_dict(weights.path, spec.arch, cfg.backbone, len(request.class_names))
        size = cfg.imgsz or spec.imgsz
        predictor = SemanticSegmenter(
            model=model,
            preprocess=replace(SEGMENTATION_PREPROCESS, resize=size, crop=size),
            names=dict(enumerate(request.class_names)),
            device=request.device,
            half=request.half,
        )
        predictor.backbone = cfg.backbone
        return predictor
    if weights.path is not None:
        raise UsageError(
            f"{weights.path} is not a densecnn checkpoint, so it does not say what {spec.name} it holds.",
            hint=f"For a plain state dict pass --backbone NAME and --num-classes N (or --class-names "
            f"a,b,c): `densecnn segment SRC --model {spec.name} --backbone {cfg.backbone or 'resnet18'} "
            f"--weights {weights.path} --num-classes N`. A .safetensors checkpoint from `densecnn train "
            "segment` names all of that itself.",
        )
    raise needs_weights(
        request,
        fresh="a fresh decoder would give random masks",
        train=f"densecnn train segment --model {spec.name} --backbone {cfg.backbone}",
    )
