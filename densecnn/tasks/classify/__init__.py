"""Classifiers: torchvision ImageNet models (``torch_cls.py``), YOLO-cls through Ultralytics
(``yolo_cls.py``) and the pooled linear head on any registry backbone (``head.py``). Each registers
its builder with ``densecnn.tasks.builders``; ``densecnn.load`` picks one."""
