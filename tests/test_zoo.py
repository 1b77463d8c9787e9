"""Walk the whole model registry: URLs, digests and class lists checked against the upstream sources."""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from pathlib import Path
from typing import get_args

import pytest
import yaml

from densecnn.errors import UsageError
from densecnn.registry import Registry
from densecnn.tasks.builders import builder_for
from densecnn.zoo import MODELS, default_model
from densecnn.zoo.specs import ModelSpec, Task

NAMES = MODELS.names()
UNVERIFIED = {"yolov8n-seg", "yolo11n-seg"}
"""Entries registered without a sha256 (none could be sourced; see densecnn/zoo/segmentation.py)."""


def _ultralytics_coco_names() -> tuple[str, ...]:
    spec = importlib.util.find_spec("ultralytics")  # located, not imported: importing it is slow
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "cfg" / "datasets" / "coco.yaml"
    names = yaml.safe_load(path.read_text())["names"]
    return tuple(names[i] for i in range(len(names)))


@pytest.fixture(scope="module")
def coco80() -> tuple[str, ...]:
    return _ultralytics_coco_names()


def test_registry_is_not_empty() -> None:
    assert len(NAMES) >= 2


@pytest.mark.parametrize("name", NAMES)
def test_entry_is_consistent(name: str) -> None:
    spec = MODELS.get(name)
    assert spec.name == name
    assert spec.task in get_args(Task)
    assert builder_for(spec.task, spec.family)  # a builder is registered for its (task, family)
    assert spec.description
    if spec.family == "densecnn" and not spec.fallback:  # on --backbone: weights come from a checkpoint
        assert spec.head is not None and spec.head.name == name and spec.head.task == spec.task
        assert spec.weights is None and not spec.classes
        return
    assert spec.classes and len(set(spec.classes) - {"N/A"}) == len([c for c in spec.classes if c != "N/A"])
    w = spec.weights
    assert w is not None
    assert w.license
    if w.embedded:  # ships in weights/ (tests/test_embedded.py checks the files): full digest, no URL
        assert spec.fallback and w.url == "" and w.full_digest and w.size and not w.pickled
        return
    assert w.url.startswith("https://")
    assert w.url.endswith("/" + w.file_name)


@pytest.mark.parametrize("name", NAMES)
def test_defaults_in_range(name: str) -> None:
    spec = MODELS.get(name)
    if spec.task == "detect" or (spec.task == "segment" and spec.family == "yolo"):  # instance models
        assert spec.conf is not None and 0.0 < spec.conf < 1.0
        assert spec.iou is not None and 0.0 < spec.iou <= 1.0
    else:  # thresholds are detection settings
        assert spec.conf is None and spec.iou is None
    assert 32 <= spec.imgsz <= 4096
    if spec.family == "yolo":
        assert spec.imgsz % 32 == 0  # YOLO's largest stride


@pytest.mark.parametrize("name", [n for n in NAMES if MODELS.get(n).family == "torchvision"])
def test_torchvision_entry_matches_torchvision(name: str) -> None:
    torchvision = pytest.importorskip("torchvision")
    spec = MODELS.get(name)
    assert spec.weights is not None
    official = torchvision.models.get_model_weights(spec.arch).DEFAULT
    assert spec.weights.url == official.url
    suffix = re.search(r"-([0-9a-f]{8,})\.pth$", spec.weights.file_name)
    assert suffix is not None, spec.weights.file_name
    assert spec.weights.sha256 == suffix.group(1)
    assert spec.classes == tuple(official.meta["categories"])
    assert not spec.weights.pickled  # state dicts load with torch.load(weights_only=True)


@pytest.mark.parametrize(
    "name", [n for n in NAMES if MODELS.get(n).family == "yolo" and not MODELS.get(n).fallback]
)
def test_ultralytics_entry(name: str, coco80: tuple[str, ...]) -> None:
    spec = MODELS.get(name)
    w = spec.weights
    assert w is not None
    assert w.pickled
    assert w.file_name == f"{spec.arch}.pt"
    if spec.task in ("detect", "segment"):  # classifiers: ImageNet names, checked in test_classify.py
        assert spec.classes == coco80
    if name in UNVERIFIED:
        assert w.sha256 is None and w.size is None and not w.full_digest and w.matches("0" * 64)
        return
    assert w.full_digest and w.sha256 is not None and re.fullmatch(r"[0-9a-f]{64}", w.sha256)
    assert w.size is not None and w.size > 1_000_000


def test_file_names_and_digests_are_unique() -> None:
    specs: list[ModelSpec] = [MODELS.get(n) for n in NAMES]
    files = Counter(s.weights.file_name for s in specs if s.weights)
    digests = Counter(s.weights.sha256 for s in specs if s.weights and s.weights.sha256)
    assert max(files.values()) == 1, files
    assert max(digests.values()) == 1, digests


def test_exactly_one_default_per_task() -> None:
    defaults = Counter(spec.task for _, spec in MODELS.items() if spec.default)
    tasks = {spec.task for _, spec in MODELS.items()}
    assert {task: defaults[task] for task in tasks} == dict.fromkeys(tasks, 1)
    assert default_model("detect").name == "yolov8n"
    for task in tasks:
        assert default_model(task).task == task


def test_misspelt_model_name_suggests_close_match() -> None:
    with pytest.raises(UsageError) as info:
        MODELS.get("yolov8m_")
    assert "yolov8n" in (info.value.hint or "")
    assert info.value.exit_code == 2
    with pytest.raises(UsageError, match="fasterrcnn_resnet50_fpn"):
        MODELS.get("faster_rcnn_resnet50_fpn")
    assert MODELS.get("YOLOv8n") is MODELS.get("yolov8n")


def test_registry_rejects_duplicates_and_lists_by_pattern() -> None:
    reg: Registry[int] = Registry("thing")
    reg.add("alpha", 1)
    reg.register("beta")(2)
    with pytest.raises(ValueError):
        reg.add("Alpha", 3)
    assert reg.names("b*") == ["beta"]
    assert "ALPHA" in reg and len(reg) == 2
    with pytest.raises(UsageError) as info:
        reg.get("zzz")
    assert "alpha" in (info.value.hint or "")
