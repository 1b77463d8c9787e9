"""Datasets in the formats users already have: YOLO, COCO JSON, masks folders, ImageFolder."""
