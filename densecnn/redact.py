"""Passwords in URLs never reach a file, a log line or the terminal: the one place that masks them.

``redact(url)`` masks the password of one URL (``rtsp://user:***@host/...``); ``redact_text(text)``
masks every ``scheme://user:password@`` inside any text (an error message that quotes a URL, a
summary field). Stream sources keep the masked form as ``StreamSpec.shown``; summary.json,
errors.jsonl, CLI error messages and log records pass through :func:`redact_text`.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# scheme://user:password@ — the password runs to the last "@" before the path (passwords with "@")
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):(?P<password>[^/\s]*)@")


def redact(url: str) -> str:
    """``url`` with the password of ``user:password@`` replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username}:{MASK}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:  # e.g. a port that is not a number: the pattern still finds the password
        return redact_text(url)
    return urlunsplit(parts._replace(netloc=netloc))


def redact_text(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ``***``."""
    if "://" not in text:
        return text
    return _CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)


def redact_obj(obj: Any) -> Any:
    """A JSON-like value with :func:`redact_text` applied to every string in it."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


class RedactingFilter(logging.Filter):
    """A logging filter that masks URL passwords in each record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
