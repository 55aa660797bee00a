"""The few KServe/Triton HTTP calls operations need: readiness, the repository index, load and unload.

Plain urllib, so the launcher needs no client library. Every call has a timeout: a server that stops
answering must not stall the watchdog.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Dict, Optional

#: Model states of Triton's repository index.
READY = "READY"
UNAVAILABLE = "UNAVAILABLE"
LOADING = "LOADING"
UNLOADING = "UNLOADING"


class ControlError(RuntimeError):
    """A repository call failed: the server's own message, or why it could not be reached."""


@dataclass(frozen=True)
class ModelState:
    """One model of the repository index; ``reason`` is Triton's (e.g. why a load failed)."""

    name: str
    state: str  # READY, UNAVAILABLE, LOADING, UNLOADING, or "" when never loaded
    reason: str = ""


class TritonControl:
    """Readiness and explicit model control of one server, over HTTP at ``url`` (``host:port``)."""

    def __init__(self, url: str, timeout_s: float = 5.0):
        self.base = f"http://{url}"
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: Optional[dict] = None, timeout_s: Optional[float] = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s or self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise ControlError(f"{method} {path}: HTTP {exc.code}: {_error_text(exc.read())}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            raise ControlError(f"{method} {path}: {exc}") from None
        return json.loads(payload) if payload else None

    def ready(self) -> bool:
        """``GET /v2/health/ready`` answered 200 (False when it answers otherwise or not at all)."""
        try:
            self._call("GET", "/v2/health/ready", timeout_s=min(self.timeout_s, 2.0))
        except ControlError:
            return False
        return True

    def index(self) -> Dict[str, ModelState]:
        """The repository index: every model folder, loaded or not, with its state."""
        entries = self._call("POST", "/v2/repository/index", {}) or []
        return {
            entry["name"]: ModelState(entry["name"], entry.get("state", ""), entry.get("reason", ""))
            for entry in entries
        }

    def load(self, model: str, timeout_s: Optional[float] = None) -> None:
        """Load (or, after an unload, reload) ``model``; returns once it is ready, raises if it failed."""
        self._call("POST", f"/v2/repository/models/{model}/load", {}, timeout_s)

    def unload(self, model: str, timeout_s: Optional[float] = None) -> None:
        """Ask the server to unload ``model`` (it finishes in the background)."""
        self._call("POST", f"/v2/repository/models/{model}/unload", {}, timeout_s)


def _error_text(payload: bytes) -> str:
    try:
        return json.loads(payload)["error"]
    except (ValueError, KeyError, TypeError):
        return payload.decode(errors="replace")
