"""``densecnn run SOURCE --detect M --segment M --classify M``: several models over one decode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from densecnn.cli import options as opt
from densecnn.cli.common import user_errors
from densecnn.config import OutputConfig, TrackConfig
from densecnn.errors import UsageError


@opt.shared_options("run")
def run(
    source: opt.Source,
    detect: opt.DetectModel = None,
    detect_weights: opt.DetectWeights = None,
    segment: opt.SegmentModel = None,
    segment_weights: opt.SegmentTaskWeights = None,
    classify: opt.ClassifyModel = None,
    classify_weights: opt.ClassifyWeights = None,
    tasks: opt.TasksFile = None,
    trust_weights: opt.TrustWeights = False,
    save: opt.Save = OutputConfig.save,
    save_txt: opt.SaveTxt = OutputConfig.save_txt,
    save_conf: opt.SaveConf = OutputConfig.save_conf,
    save_crops: opt.SaveCrops = OutputConfig.save_crops,
    save_masks: opt.SaveMasks = OutputConfig.save_masks,
    alpha: opt.Alpha = OutputConfig.alpha,
    track: opt.Track = False,
    tracker: opt.Tracker = TrackConfig.tracker,
    line: opt.CountLine = None,
    zone: opt.CountZone = None,
    anchor: opt.Anchor = TrackConfig.anchor,
    trail: opt.Trail = TrackConfig.trail,
    *,
    shared: opt.Shared,
) -> None:
    """Run several models over one decode: detection, segmentation and classification of each frame,
    each frame decoded once and given to every model (any subset of --detect, --segment, --classify;
    a task runs when its model, its weights or its entry in --tasks is given).

    Writes to runs/run/predict (predict2, ... on later runs): predictions.jsonl (one line per frame
    with every task's results: detections, segments / instances, classes), annotated images and
    H.264 videos showing every task, and in detect/, segment/, classify/ each task's own files as its
    command writes them (predictions.jsonl, predictions.coco.json, masks/ and classes.json, crops/,
    labels/, predictions.csv); summary.json and, when inputs fail, errors.jsonl. With --track the
    detect task is tracked and counted as `densecnn track` does. Exit code: 0 all inputs done, 1 some
    failed, 2 usage error, 3 weights unavailable or untrusted, 4 outputs could not be written, 130
    interrupted.
    """
    from densecnn.cli.run import configure_logging, run_prediction
    from densecnn.multitask import read_tasks_file, task_config

    configure_logging(shared.verbose)
    with user_errors(verbose=shared.verbose):
        wanted = read_tasks_file(tasks) if tasks is not None else {}
        given = {"detect": (detect, detect_weights), "segment": (segment, segment_weights)}
        given["classify"] = (classify, classify_weights)
        for name, (model, weights) in given.items():
            if model is None and weights is None:
                continue
            values: dict[str, Any] = wanted.setdefault(name, {})
            if model is not None:
                values["model"] = model
            if weights is not None:
                values["weights"] = Path(weights)
        if not wanted:
            raise UsageError(
                "Name at least one task: --detect MODEL, --segment MODEL, --classify MODEL (or their "
                "--TASK-weights), or a --tasks file.",
                hint="e.g. densecnn run video.mp4 --detect person-yolov8n --segment person-unet",
            )
        shared_cfg = {**shared.predict_kwargs(), "trust_weights": trust_weights}
        configs, segment_names = {}, None
        for name, values in wanted.items():
            if trust_weights:
                values.setdefault("trust_weights", True)
            configs[name], names = task_config(
                values, {k: v for k, v in shared_cfg.items() if k not in values}
            )
            if name == "segment":
                segment_names = names
        tcfg = None
        if track:
            tcfg = TrackConfig(
                tracker=tracker, lines=tuple(line or ()), zones=tuple(zone or ()), anchor=anchor, trail=trail
            )
        elif line or zone:
            raise UsageError("--line and --zone count tracked objects: add --track.")
        ocfg = shared.output_config(
            save=save,
            save_txt=save_txt,
            save_conf=save_conf,
            save_crops=save_crops,
            save_masks=save_masks,
            alpha=alpha,
        )
        code = run_prediction(
            task="run",
            source=source,
            pcfg=next(iter(configs.values())),
            ocfg=ocfg,
            lcfg=shared.live_config(),
            ecfg=shared.engine_config(),
            quiet=shared.quiet,
            class_names=segment_names,
            track=tcfg,
            tasks=configs,
        )
    raise typer.Exit(code)
