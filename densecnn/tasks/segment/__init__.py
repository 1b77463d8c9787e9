"""Segmenters: YOLO instance masks (``yolo_seg.py``), torchvision DeepLabV3 / LR-ASPP
(``semantic.py``) and U-Net / DeepLabV3(+) heads on any registry backbone (``smp_heads.py``). Each
registers its builder with ``densecnn.tasks.builders``; ``densecnn.load`` picks one.

Which model runs (resolved by ``densecnn.tasks.loading``):

- ``--weights`` a densecnn checkpoint names its own model, backbone, classes and normalisation; its
  images are resized so the shorter side is ``meta.input_size`` (``--imgsz`` overrides).
- ``--weights`` an Ultralytics ``.pt`` (told from its bytes, never unpickled for that): a YOLO
  instance segmenter (``--model`` may name a ``-seg`` model; default ``yolov8n-seg``).
- otherwise ``--model`` (default: the segment default), with ``--weights`` replacing its official file
  (a torchvision state dict); ``--model unet|deeplabv3plus --backbone NAME --weights plain.pth`` with
  ``--num-classes`` / ``--class-names`` rebuilds the head and loads the state dict.
"""
