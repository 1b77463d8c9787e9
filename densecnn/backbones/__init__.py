"""Backbones: CNNs cut into stages that every head builds on (torch is imported only to build one).

``BACKBONES`` lists them (``densecnn models --matrix`` shows which heads each serves);
:func:`build_backbone` builds one, with ImageNet weights if asked.
"""

from densecnn.backbones.registry import BACKBONES, build_backbone
from densecnn.backbones.specs import BackboneSpec, FeatureInfo, check_strides
from densecnn.zoo.specs import Preprocess

__all__ = ["BACKBONES", "BackboneSpec", "FeatureInfo", "Preprocess", "build_backbone", "check_strides"]
