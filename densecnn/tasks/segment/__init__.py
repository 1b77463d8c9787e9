"""Segmentation: U-Net and DeepLabV3+ heads on registry backbones (smp_heads.py)."""
