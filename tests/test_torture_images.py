"""Hostile and unusual image files (issue 13). Decoding is in-process (fast); a few CLI runs check
the policy end to end.

Policy (densecnn/sources/images.py): one decode path (OpenCV, EXIF orientation applied); truncated
or corrupt JPEG/PNG data, decompression bombs and unreadable files are failed inputs recorded in
errors.jsonl (exit 1) while the other inputs are processed; ``--on-corrupt process`` decodes
damaged JPEG/PNG data anyway. GIF is not an image input (not a suffix densecnn reads).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, CliRunner
from PIL import Image, ImageOps

from densecnn.errors import InputError
from densecnn.sources.images import decode_image, read_image

SAMPLE = ROOT / "samples" / "coffee.jpg"


def _corrupt_variants() -> dict[str, bytes]:
    """A real JPEG whose second half is damaged, each ending with an intact end-of-image marker."""
    buf = SAMPLE.read_bytes()
    half = len(buf) // 2
    noise = np.random.default_rng(0).integers(0, 255, len(buf) - half, dtype=np.uint8).tobytes()
    return {
        "random-second-half": buf[:half] + noise + b"\xff\xd9",
        "zeroed-second-half": buf[:half] + b"\0" * (len(buf) - half) + b"\xff\xd9",
        "cut-then-eoi": buf[:half] + b"\xff\xd9",
    }


@pytest.mark.parametrize("variant", list(_corrupt_variants()))
def test_corrupt_jpeg_with_end_marker(variant: str) -> None:
    data = _corrupt_variants()[variant]
    with pytest.raises(InputError, match="corrupt JPEG data"):
        decode_image(data)
    image = decode_image(data, on_corrupt="process")  # as OpenCV decodes it
    assert image.shape == (400, 600, 3)


def _jpeg_variants() -> dict[str, bytes]:
    src = Image.open(ROOT / "samples" / "astronaut.jpg")
    out: dict[str, bytes] = {}
    for name, img, kw in [
        ("progressive", src, {"progressive": True}),
        ("optimized", src, {"optimize": True}),
        ("444", src, {"subsampling": 0}),
        ("q5", src, {"quality": 5}),
        ("cmyk", src.convert("CMYK"), {}),
        ("gray", src.convert("L"), {}),
        ("1x1", src.resize((1, 1)), {}),
        ("13x7", src.resize((13, 7)), {}),
    ]:
        b = io.BytesIO()
        img.save(b, "JPEG", **kw)
        out[name] = b.getvalue()
    bgr = np.asarray(src)[..., ::-1]
    out["restart-markers"] = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_RST_INTERVAL, 4])[1].tobytes()
    out["appended-data"] = out["optimized"] + b"\0" * 100 + b"trailing motion-photo bytes"
    for p in sorted((ROOT / "samples").glob("*.jpg")):
        out[p.name] = p.read_bytes()
    return out


@pytest.mark.parametrize("variant", list(_jpeg_variants()))
def test_valid_jpegs_are_not_called_corrupt(variant: str) -> None:
    image = decode_image(_jpeg_variants()[variant])
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


def test_cli_corrupt_policy(run_cli: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / "good.jpg")
    (folder / "bad.jpg").write_bytes(_corrupt_variants()["random-second-half"])
    proc = run_cli("detect", str(folder), "--out", "o", "--name", "skip")
    assert proc.returncode == 1, proc.stderr
    errors = [json.loads(x) for x in (tmp_path / "o/skip/errors.jsonl").read_text().splitlines()]
    assert [e["source"] for e in errors] == ["bad.jpg"] and "corrupt JPEG data" in errors[0]["error"]
    rows = [json.loads(x) for x in (tmp_path / "o/skip/predictions.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == ["good.jpg"]
    assert "Corrupt JPEG data" not in proc.stderr  # caught before OpenCV decodes it
    proc = run_cli("detect", str(folder), "--out", "o", "--name", "process", "--on-corrupt", "process")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in (tmp_path / "o/process/predictions.jsonl").read_text().splitlines()]
    assert sorted(r["source"] for r in rows) == ["bad.jpg", "good.jpg"]


def _quadrants() -> np.ndarray:
    """RGB 80x48: four flat quadrants of distinct colours (survive JPEG)."""
    img = np.zeros((48, 80, 3), np.uint8)
    img[:24, :40], img[:24, 40:] = (255, 0, 0), (0, 255, 0)
    img[24:, :40], img[24:, 40:] = (0, 0, 255), (255, 255, 0)
    return img


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations(orientation: int) -> None:
    """EXIF orientation is applied, exactly as Pillow's exif_transpose does it."""
    src = Image.fromarray(_quadrants())
    exif = src.getexif()
    exif[0x0112] = orientation
    b = io.BytesIO()
    src.save(b, "JPEG", quality=95, exif=exif)
    ours = decode_image(b.getvalue())[..., ::-1]  # to RGB
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(b.getvalue()))).convert("RGB"))
    assert ours.shape == expected.shape == ((80, 48, 3) if orientation >= 5 else (48, 80, 3))
    assert np.abs(ours.astype(int) - expected.astype(int)).mean() < 3


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_decompression_bomb_header() -> None:
    """A tiny PNG that declares 100000x100000 pixels is refused from its header, before decoding."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + _png_chunk(b"IEND", b"")
    )
    assert len(data) < 200
    with pytest.raises(InputError, match="image too large"):
        decode_image(data)


@pytest.mark.parametrize("damage", ["crc", "data"])
def test_png_bad_crc_or_data(damage: str) -> None:
    b = io.BytesIO()
    Image.fromarray(_quadrants()).save(b, "PNG")
    png = bytearray(b.getvalue())
    at = png.find(b"IDAT")
    length = int.from_bytes(png[at - 4 : at], "big")
    png[at + 4 + (length if damage == "crc" else length // 2)] ^= 0xFF
    with pytest.raises(InputError, match="corrupt PNG data"):
        decode_image(bytes(png))


@pytest.mark.parametrize("fmt", ["WEBP", "TIFF", "BMP", "PNG"])
def test_other_formats(fmt: str) -> None:
    b = io.BytesIO()
    Image.fromarray(_quadrants()).save(b, fmt)
    image = decode_image(b.getvalue())
    assert image.shape == (48, 80, 3)
    assert np.abs(image[..., ::-1].astype(int) - _quadrants()).mean() < 3


def test_gif_is_not_an_input(run_cli: CliRunner, tmp_path: Path) -> None:
    Image.fromarray(_quadrants()).save(tmp_path / "a.gif")
    proc = run_cli("detect", str(tmp_path / "a.gif"))
    assert proc.returncode == 2 and "unsupported file type '.gif'" in proc.stderr


def test_non_utf8_file_names(run_cli: CliRunner, tmp_path: Path) -> None:
    """A name that is not UTF-8 is processed; JSON outputs carry it escaped (valid UTF-8 JSON)."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / "ok.jpg")
    shutil.copy(SAMPLE, os.fsdecode(bytes(folder) + b"/caf\xe9.jpg"))
    (folder / os.fsdecode(b"bro\xffken.jpg")).write_bytes(b"not a jpeg")
    proc = run_cli("detect", str(folder), "--out", "o")
    assert proc.returncode == 1, proc.stderr  # the broken one failed, the others ran
    run = tmp_path / "o" / "predict"
    rows = [json.loads(x) for x in (run / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["source"] for r in rows) == ["caf\\xe9.jpg", "ok.jpg"]
    (err,) = [json.loads(x) for x in (run / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert err["source"] == "bro\\xffken.jpg"
    coco = json.loads((run / "predictions.coco.json").read_text(encoding="utf-8"))
    assert len(coco["images"]) == 2
    assert (run / "caf\\xe9.jpg").is_file()


def test_unreadable_file_as_non_root(tmp_path: Path) -> None:
    """As root every file is readable, so the run drops to uid 65534 (setpriv) for this case."""
    setpriv = shutil.which("setpriv")
    if os.getuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run densecnn as an unprivileged user")
    work = Path("/tmp") / f"densecnn-unreadable-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "in").mkdir(parents=True)
    try:
        os.chmod(work, 0o777)
        shutil.copy(SAMPLE, work / "in" / "ok.jpg")
        shutil.copy(SAMPLE, work / "in" / "secret.jpg")
        os.chmod(work / "in" / "secret.jpg", 0)
        env = {**os.environ, "DENSECNN_OFFLINE": "1", "DENSECNN_WEIGHTS_DIR": str(work / "_w")}
        env["PYTHONPATH"] = str(ROOT)
        env["HOME"] = str(work)
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
        probe = subprocess.run([*cmd, "-c", "import densecnn"], env=env, capture_output=True, cwd=work)
        if probe.returncode != 0:
            pytest.skip(f"uid 65534 cannot run this checkout: {probe.stderr.decode()[-200:]}")
        proc = subprocess.run(
            [*cmd, "-m", "densecnn", "detect", "in", "--out", "o"],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 1, proc.stderr
        (err,) = [json.loads(x) for x in (work / "o/predict/errors.jsonl").read_text().splitlines()]
        assert err["source"] == "secret.jpg" and "Permission denied" in err["error"]
        assert (work / "o/predict/ok.jpg").is_file()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_read_image_reasons(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    (tmp_path / "trunc.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", b"\0" * 13)[:10])
    for name, reason in [("empty.jpg", "empty"), ("text.jpg", "not a decodable"), ("trunc.png", "truncated")]:
        with pytest.raises(InputError, match=reason):
            read_image(tmp_path / name)


def test_list_file_listing_itself_and_missing_entries(tmp_path: Path) -> None:
    """A .txt list that names itself and a missing file: both are failed inputs, the rest runs."""
    from densecnn.sources import open_source
    from densecnn.sources.base import InputFailure

    shutil.copy(SAMPLE, tmp_path / "ok.jpg")
    (tmp_path / "list.txt").write_text("list.txt\nok.jpg\nmissing.jpg\n")
    events = list(open_source(tmp_path / "list.txt").events())
    failures = {e.ref.source: e.error for e in events if isinstance(e, InputFailure)}
    frames = [e.source for e in events if type(e).__name__ == "Frame"]
    assert frames == ["ok.jpg"]
    assert "unsupported file type" in failures["list.txt"] and failures["missing.jpg"] == "file not found"
