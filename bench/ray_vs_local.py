"""Images per second of ``densecnn segment FOLDER`` with the local engine next to ``--engine ray`` on
this machine: the same images, weights and options, alternated local, ray, local, ray.

Each run is a subprocess timed from start to exit. Reported per engine (median over repeats):

- wall: the whole command (interpreter, imports, model load, Ray start-up or join, every image, merge);
- pipeline: the run itself as summary.json measures it (``wall_s``: local from the first image to the
  last; Ray from submitting the dataset to the merged files, actor start-up and model loads included);
- Ray's workers: images/s each while busy (decode → predict → write, from summary.json's
  ``engine.per_worker``), and each actor's model load time.

Ray's overhead on one machine = its wall minus the local wall: the Ray instance start-up (or the join
with ``--address``), the actors' start-up and model loads, the byte-reading stage and the merge.

    .venv/bin/python bench/ray_vs_local.py                         # 32 coco128 images, 2 workers
    .venv/bin/python bench/ray_vs_local.py --images 64 --workers 2 --repeats 2
    ray start --head && .venv/bin/python bench/ray_vs_local.py --address auto   # without Ray's start-up
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT / ".." / "shared" / "data" / "coco128" / "images" / "train2017"


def _run(cmd: list[str], env: dict[str, str], cwd: Path, run_dir: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"wall": wall, "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--images", type=int, default=32, help="the first N images of --source")
    ap.add_argument("--weights", type=Path, default=ROOT / "weights" / "person-unet.safetensors")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--address", default=None, help="join this Ray cluster instead of starting one")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    images = sorted(p for p in args.source.iterdir() if p.suffix.lower() in {".jpg", ".png"})[: args.images]
    env = {**os.environ, "DENSECNN_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    results: dict[str, list[dict[str, Any]]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for image in images:
            (folder / image.name).symlink_to(image.resolve())
        base = [sys.executable, "-m", "densecnn", "segment", str(folder), "--weights", str(args.weights)]
        base += ["--batch", str(args.batch), "--out", "out", "--quiet"]
        for i in range(args.repeats):
            for engine in ("local", "ray"):
                name = f"{engine}{i}"
                cmd = [*base, "--name", name]
                if engine == "ray":
                    cmd += ["--engine", "ray", "--workers", str(args.workers)]
                    cmd += ["--address", args.address] if args.address else []
                result = _run(cmd, env, Path(tmp), Path(tmp) / "out" / name)
                results[engine].append(result)
                print(f"{name}: {result['wall']:.1f} s wall", file=sys.stderr)
    report = _report(results, len(images))
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _report(results: dict[str, list[dict[str, Any]]], n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"images": n}
    for engine, runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        pipeline = statistics.median(r["summary"]["wall_s"] for r in runs)
        entry: dict[str, Any] = {
            "wall_s": round(wall, 2),
            "images_per_s_wall": round(n / wall, 3),
            "pipeline_s": round(pipeline, 2),
            "images_per_s_pipeline": round(n / pipeline, 3),
        }
        if engine == "ray":
            workers = [w for r in runs for w in r["summary"]["engine"]["per_worker"]]
            entry["per_worker_images_per_s"] = [w["images_per_s"] for w in workers]
            entry["per_worker_model_load_s"] = [w["model_load_s"] for w in workers]
            engines = [r["summary"]["engine"] for r in runs]
            entry["ray_connect_s"] = [e["connect_s"] for e in engines]
            entry["first_result_s"] = [e["first_result_s"] for e in engines]
            entry["per_worker_busy_s"] = [w["busy_s"] for w in workers]
        out[engine] = entry
    out["ray_overhead_s"] = round(out["ray"]["wall_s"] - out["local"]["wall_s"], 2)
    out["ray_wall_ratio"] = round(out["ray"]["wall_s"] / out["local"]["wall_s"], 2)
    return out


if __name__ == "__main__":
    main()
