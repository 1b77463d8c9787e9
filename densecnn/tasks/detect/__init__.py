"""Detectors: YOLO through Ultralytics (``yolo.py``), torchvision Faster R-CNN (``rcnn.py``) and
Faster R-CNN on any registry backbone (``rcnn_backbone.py``). Each registers its builder with
``densecnn.tasks.builders``; ``densecnn.load`` picks one."""
