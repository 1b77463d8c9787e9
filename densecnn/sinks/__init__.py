"""Output sinks for the prediction commands: one class per output format (see ``base.Sink``)."""

from densecnn.sinks.base import Sink
from densecnn.sinks.coco import CocoSink
from densecnn.sinks.crops import CropsSink
from densecnn.sinks.csv import CsvSink, DetectionsCsvSink
from densecnn.sinks.errors import ErrorsSink
from densecnn.sinks.images import ImageSink
from densecnn.sinks.jsonl import JsonlSink, read_jsonl
from densecnn.sinks.labels import LabelsSink
from densecnn.sinks.masks import MaskSink
from densecnn.sinks.video import VideoSink

__all__ = [
    "CocoSink",
    "CropsSink",
    "CsvSink",
    "DetectionsCsvSink",
    "ErrorsSink",
    "ImageSink",
    "JsonlSink",
    "LabelsSink",
    "MaskSink",
    "Sink",
    "VideoSink",
    "read_jsonl",
]
