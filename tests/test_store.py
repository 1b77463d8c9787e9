"""The weight store against a real loopback HTTP server and file:// mirrors, and the CLI (run in this
process as ``run_cli`` runs it; the server answers from its own thread)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import run_in_process

from densecnn.errors import ChecksumError, UsageError, WeightsUnavailableError
from densecnn.zoo import MODELS, WeightsFile
from densecnn.zoo.store import WeightStore, default_weights_dir, sha256_file

GOOD = bytes(range(256)) * 4096 + b"densecnn test weights"  # ~1 MiB: more than one read chunk
BAD = b"X" + GOOD[1:]  # same size, different bytes
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()
NAME = "tiny.bin"
TINY = WeightsFile(
    file_name=NAME, url=f"https://example.invalid/{NAME}", sha256=GOOD_SHA, size=len(GOOD), license="test"
)


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/good/*``: GOOD; ``/bad/*``: BAD; ``/short/*``: a body cut short; ``/slow/*``: stalls; else 404."""

    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        kind = self.path.strip("/").split("/", 1)[0]
        if kind == "slow":
            time.sleep(2)
        if kind not in ("good", "bad", "short", "slow"):
            self.send_error(404)
            return
        body = BAD if kind == "bad" else GOOD
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if kind == "short" else body)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (timeout test) is expected


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def _base(srv: _Server, kind: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/{kind}"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "DENSECNN_WEIGHTS_DIR",
        "DENSECNN_WEIGHTS_MIRROR",
        "DENSECNN_OFFLINE",
        "DENSECNN_DOWNLOAD_TIMEOUT",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# -- the store ------------------------------------------------------------------------------------


def test_fetch_downloads_verifies_and_renames(server: _Server, tmp_path: Path) -> None:
    store = WeightStore(root=tmp_path, mirror=_base(server, "good"))
    assert not store.is_cached(TINY)
    path = store.fetch(TINY, progress=True)
    assert path == tmp_path / NAME
    assert path.read_bytes() == GOOD
    assert sha256_file(path) == GOOD_SHA
    assert _listing(tmp_path) == [NAME]  # no .part left
    result = store.verify(TINY)
    assert (result.status, result.path, result.digest) == ("ok", path, GOOD_SHA)
    # Second fetch: served from the cache, no request.
    hits = len(server.hits)  # type: ignore[attr-defined]
    assert store.fetch(TINY) == path
    assert len(server.hits) == hits  # type: ignore[attr-defined]


def test_stale_part_file_is_replaced(server: _Server, tmp_path: Path) -> None:
    (tmp_path / f"{NAME}.part").write_bytes(b"left over from a killed run")
    path = WeightStore(root=tmp_path, mirror=_base(server, "good")).fetch(TINY, progress=False)
    assert path.read_bytes() == GOOD
    assert _listing(tmp_path) == [NAME]


def test_wrong_checksum_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    store = WeightStore(root=tmp_path, mirror=_base(server, "bad"))
    with pytest.raises(ChecksumError) as info:
        store.fetch(TINY, progress=False)
    text = str(info.value)
    assert NAME in text
    assert f"{_base(server, 'bad')}/{NAME}" in text
    assert GOOD_SHA in text
    assert hashlib.sha256(BAD).hexdigest() in text
    assert info.value.exit_code == 3
    assert _listing(tmp_path) == []


def test_wrong_size_with_prefix_digest_is_rejected(server: _Server, tmp_path: Path) -> None:
    spec = WeightsFile(file_name=NAME, url=TINY.url, sha256=GOOD_SHA[:8], size=len(GOOD) + 1)
    with pytest.raises(ChecksumError, match="bytes"):
        WeightStore(root=tmp_path, mirror=_base(server, "good")).fetch(spec, progress=False)
    assert _listing(tmp_path) == []


def test_prefix_sha256_is_accepted_when_it_matches(server: _Server, tmp_path: Path) -> None:
    spec = WeightsFile(file_name=NAME, url=TINY.url, sha256=GOOD_SHA[:8])
    store = WeightStore(root=tmp_path, mirror=_base(server, "good"))
    assert store.fetch(spec, progress=False).read_bytes() == GOOD
    assert store.verify(spec).status == "ok"
    wrong = WeightsFile(file_name="other.bin", url=TINY.url, sha256="0" * 8)
    with pytest.raises(ChecksumError):
        store.fetch(wrong, progress=False)


def test_interrupted_download_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    store = WeightStore(root=tmp_path, mirror=_base(server, "short"))
    with pytest.raises(WeightsUnavailableError, match="interrupted"):
        store.fetch(TINY, progress=False)
    assert _listing(tmp_path) == []


def test_http_error_and_timeout(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="HTTP 404"):
        WeightStore(root=tmp_path, mirror=_base(server, "nothing")).fetch(TINY, progress=False)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="timed out"):
        WeightStore(root=tmp_path, mirror=_base(server, "slow"), timeout=0.3).fetch(TINY, progress=False)
    assert time.monotonic() - start < 1.5
    assert _listing(tmp_path) == []


def test_unreachable_mirror_names_file_cache_and_ways_out(tmp_path: Path, closed_port: int) -> None:
    store = WeightStore(root=tmp_path / "cache", mirror=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(WeightsUnavailableError) as info:
        store.fetch(TINY, model="tiny", progress=False)
    text = str(info.value)
    assert NAME in text
    assert str(tmp_path / "cache") in text
    assert f"http://127.0.0.1:{closed_port}/{NAME}" in text
    assert "--weights" in text
    assert "densecnn weights pull tiny" in text
    assert "DENSECNN_WEIGHTS_MIRROR" in text
    assert TINY.url in text  # where to get the file by hand
    assert info.value.exit_code == 3
    assert _listing(tmp_path / "cache") == []


def test_offline_never_opens_a_socket(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_connect(*args: object, **kwargs: object) -> None:
        raise AssertionError("offline mode opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setenv("DENSECNN_OFFLINE", "1")
    store = WeightStore(root=tmp_path, mirror=_base(server, "good"))
    assert store.offline
    with pytest.raises(WeightsUnavailableError) as info:
        store.fetch(TINY, progress=False)
    assert "offline" in str(info.value)
    assert "--weights" in str(info.value)
    assert server.hits == []  # type: ignore[attr-defined]
    # A cached file is still served offline.
    (tmp_path / NAME).write_bytes(GOOD)
    assert store.fetch(TINY) == tmp_path / NAME


def test_file_mirror(tmp_path: Path) -> None:
    folder = tmp_path / "mirror dir"
    folder.mkdir()
    (folder / NAME).write_bytes(GOOD)
    store = WeightStore(root=tmp_path / "cache", mirror=folder.as_uri() + "/")
    assert store.url_for(TINY) == f"{folder.as_uri()}/{NAME}"
    assert store.fetch(TINY, progress=False).read_bytes() == GOOD
    missing = WeightsFile(file_name="absent.bin", url=TINY.url, sha256=GOOD_SHA)
    with pytest.raises(WeightsUnavailableError, match=r"absent\.bin"):
        store.fetch(missing, progress=False)
    assert _listing(tmp_path / "cache") == [NAME]


def test_verify_and_cached_pickles(tmp_path: Path) -> None:
    store = WeightStore(root=tmp_path, offline=True)
    assert store.verify(TINY).status == "missing"
    (tmp_path / NAME).write_bytes(BAD)
    result = store.verify(TINY)
    assert result.status == "mismatch"
    assert result.digest == hashlib.sha256(BAD).hexdigest()
    # Not pickled: a cached file is returned as is (verify on request); pickled: always checked.
    assert store.fetch(TINY) == tmp_path / NAME
    with pytest.raises(ChecksumError):
        store.fetch(TINY, verify=True)
    pickled = WeightsFile(file_name=NAME, url=TINY.url, sha256=GOOD_SHA, pickled=True)
    with pytest.raises(ChecksumError, match="does not match"):
        store.fetch(pickled)


def test_settings_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = Path(__file__).resolve().parents[1]
    assert default_weights_dir() == checkout / "weights"
    monkeypatch.setenv("DENSECNN_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("DENSECNN_WEIGHTS_MIRROR", "file:///srv/weights")
    monkeypatch.setenv("DENSECNN_OFFLINE", "true")
    monkeypatch.setenv("DENSECNN_DOWNLOAD_TIMEOUT", "2.5")
    store = WeightStore()
    assert (store.root, store.mirror, store.offline, store.timeout) == (
        tmp_path,
        "file:///srv/weights",
        True,
        2.5,
    )
    assert store.path(TINY) == tmp_path / NAME
    assert WeightStore(offline=False, root=tmp_path / "x").offline is False
    monkeypatch.setenv("DENSECNN_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="DENSECNN_DOWNLOAD_TIMEOUT"):
        WeightStore()


def test_file_name_cannot_escape_the_cache(tmp_path: Path) -> None:
    evil = WeightsFile(file_name="../evil.bin", url=TINY.url, sha256=GOOD_SHA)
    with pytest.raises(ValueError):
        WeightStore(root=tmp_path).path(evil)


# -- the CLI --------------------------------------------------------------------------------------


def _cli(*args: str, weights_dir: Path, mirror: str | None = None) -> subprocess.CompletedProcess[str]:
    """``densecnn ARGS`` with no DENSECNN_* setting or COLUMNS but these (``None`` unsets)."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("DENSECNN_") or k == "COLUMNS"}
    env.update(DENSECNN_WEIGHTS_DIR=str(weights_dir), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1")
    if mirror is not None:
        env["DENSECNN_WEIGHTS_MIRROR"] = mirror
    return run_in_process(args, cwd=Path.cwd(), env=env, timeout=120)


def test_cli_pull_without_network(tmp_path: Path, closed_port: int) -> None:
    proc = _cli("weights", "pull", "yolov8n", weights_dir=tmp_path, mirror=f"http://127.0.0.1:{closed_port}")
    assert proc.returncode == 3, proc.stderr
    assert "yolov8n.pt" in proc.stderr
    assert "--weights" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _listing(tmp_path) == []


def test_cli_pull_wrong_file(server: _Server, tmp_path: Path) -> None:
    proc = _cli("weights", "pull", "yolov8n", weights_dir=tmp_path, mirror=_base(server, "bad"))
    assert proc.returncode == 3, proc.stderr
    assert "yolov8n.pt" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _listing(tmp_path) == []


def test_cli_pull_usage_errors(tmp_path: Path, closed_port: int) -> None:
    proc = _cli("weights", "pull", "yolov8nn", weights_dir=tmp_path, mirror=f"http://127.0.0.1:{closed_port}")
    assert proc.returncode == 2
    assert "yolov8n" in proc.stderr  # close-match hint
    proc = _cli("weights", "pull", weights_dir=tmp_path)
    assert proc.returncode == 2
    assert "--all" in proc.stderr


def test_cli_path(tmp_path: Path) -> None:
    proc = _cli("weights", "path", "yolov8n", weights_dir=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.strip() == str(tmp_path / "yolov8n.pt")
    assert "weights pull yolov8n" in proc.stderr
    (tmp_path / "yolov8n.pt").write_bytes(b"whatever")
    proc = _cli("weights", "path", "YOLOv8n", weights_dir=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == str(tmp_path / "yolov8n.pt")


def test_cli_list_and_models_show_every_model(tmp_path: Path) -> None:
    for args in (("weights", "list"), ("models",)):
        proc = _cli(*args, weights_dir=tmp_path)
        assert proc.returncode == 0, proc.stderr
        listed = [n for n, s in MODELS.items() if s.weights is not None or args == ("models",)]
        for name in listed:  # `weights list` lists weight files: backbone-built models have none
            assert name in proc.stdout, (args, name)
    records = json.loads(_cli("weights", "list", "--json", weights_dir=tmp_path).stdout)
    assert [r["model"] for r in records] == [n for n, s in MODELS.items() if s.weights is not None]
    embedded = {n for n, s in MODELS.items() if s.weights is not None and s.weights.embedded}
    assert all(r["cached"] is (r["model"] in embedded) for r in records)  # embedded: ship in weights/
    models = json.loads(_cli("models", "--json", "--task", "detect", weights_dir=tmp_path).stdout)
    assert {m["name"] for m in models} == {n for n, s in MODELS.items() if s.task == "detect"}
    assert _cli("models", "--task", "nope", weights_dir=tmp_path).returncode == 2


def test_cli_verify(tmp_path: Path) -> None:
    proc = _cli("weights", "verify", weights_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr  # nothing cached: nothing wrong
    assert _cli("weights", "verify", "yolov8n", weights_dir=tmp_path).returncode == 1  # named and missing
    (tmp_path / "yolov8n.pt").write_bytes(b"tampered")
    proc = _cli("weights", "verify", weights_dir=tmp_path)
    assert proc.returncode == 1
    assert "mismatch" in proc.stdout
    assert "yolov8n" in proc.stderr
