"""Launch a Triton Inference Server over the project's model repository, keep it healthy, stop it gently.

The server runs with explicit model control and loads every model of the repository (none needs another
at load time: the orchestrators call their stages only per request), so that the watchdog
(``musicgen.serving.watchdog``) can reload a model whose Python backend stub died. It listens on the
loopback unless told otherwise, and a stop lets the requests in flight finish (see ``TritonServer.stop``).

By default this runs the ``tritonserver`` binary that ships inside the ``nvidia-pytriton`` wheel
(CPU-only here); on a GPU host, point ``--tritonserver`` or the ``TRITONSERVER`` environment
variable at another binary (e.g. the NGC container's ``/opt/tritonserver/bin/tritonserver``) and the
wheel is not needed.

Library use::

    with TritonServer("build/model_repository", http_port=free_port()) as server:
        client = tritonclient.http.InferenceServerClient(server.http_url)

Command line::

    python -m musicgen.serving --repository build/model_repository [--http-port 8000 ...]
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import ipaddress
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from . import shm
from .control import TritonControl
from .stubs import stub_processes
from .watchdog import Watchdog

log = logging.getLogger("musicgen.serving.launcher")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPOSITORY = PROJECT_ROOT / "build" / "model_repository"
DEFAULT_BACKEND_DIR = PROJECT_ROOT / "build" / "triton_backends"
LOG_TAIL_LINES = 40
# glog error lines ("E1126 05:13:27.88 ...") and fatal messages: on a failed start they can sit
# above a long options table that pushes them out of the tail.
_ERROR_LINE = re.compile(r"^(E\d{4} |error:|\[libprotobuf ERROR)")
# What tritonserver 2.51 logs at a stop: the first once SIGTERM arrived, the second once no inference is in
# flight any more (then it unloads the models, within what is left of its exit timeout).
_STOP_BEGUN = "Waiting for in-flight requests to complete"
_REQUESTS_DRAINED = "All models are stopped, unloading models"

PathLike = Union[str, os.PathLike]


class TritonServerError(RuntimeError):
    """The server could not be started or died; the message carries the tail of its log."""


class TritonServerTimeout(TritonServerError, TimeoutError):
    """The server is alive but did not become ready in time."""


class MissingRepositoryError(FileNotFoundError):
    """The model repository does not exist or holds no model folders."""


def check_model_repository(path: PathLike) -> Path:
    """Return ``path`` as a Path, or raise MissingRepositoryError saying how to build it."""
    repo = Path(path)
    if not repo.is_dir() or not any(child.is_dir() for child in repo.iterdir()):
        state = "does not exist" if not repo.exists() else "has no models"
        raise MissingRepositoryError(
            f"model repository {repo} {state}; build it with `make export`"
        )
    return repo


def model_instances(repository: Path) -> int:
    """How many model instances (stubs) the repository's configs ask for: each needs its /dev/shm region."""
    total = 0
    for config in Path(repository).glob("*/config.pbtxt"):
        counts = re.findall(r"\bcount:\s*(\d+)", config.read_text())
        total += sum(map(int, counts)) or 1
    return total


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to anything


def free_ports(count: int, host: str = "127.0.0.1") -> List[int]:
    """Return ``count`` distinct TCP ports that were free a moment ago.

    All sockets are held open until every port is picked, so the ports cannot collide with each
    other (another process may still grab one before the server binds it: rare, and loud).
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """Return one TCP port that was free a moment ago."""
    return free_ports(1, host)[0]


def _pytriton_root() -> Path:
    """The ``pytriton/tritonserver`` folder of the installed wheel.

    Found with find_spec rather than an import: the wheel is installed without its dependencies,
    so importing ``pytriton`` fails, and only its files are needed.
    """
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonServerError(
            "no tritonserver binary: install nvidia-pytriton, or pass --tritonserver / set "
            "TRITONSERVER to an existing tritonserver binary"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "tritonserver"


def prepare_backend_dir(pytriton_root: Path, backend_dir: Path) -> Path:
    """Lay out the wheel's Python backend as Triton expects it, under ``backend_dir``; idempotent.

    The wheel keeps one backend stub per Python version in a separate folder, while the backend
    looks for ``triton_python_backend_stub`` next to ``libtriton_python.so``; so we link the stub
    matching the running Python beside the backend's files.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = pytriton_root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        available = sorted(p.name for p in (pytriton_root / "python_backend_stubs").iterdir())
        raise TritonServerError(
            f"the pytriton wheel has no Python backend stub for Python {version} "
            f"(available: {', '.join(available)})"
        )
    python_dir = backend_dir / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    backend = pytriton_root / "backends" / "python"
    for target in (backend / "libtriton_python.so", backend / "triton_python_backend_utils.py", stub):
        _symlink(target, python_dir / target.name)
    return backend_dir


def _symlink(target: Path, link: Path) -> None:
    """Point ``link`` at ``target``, replacing a stale link atomically (safe for parallel runs)."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def _warn_if_numpy_2() -> None:
    """Warn when numpy 2 would be loaded by the wheel's Python backend stub.

    The stub's pybind11 reads numpy 1.x array descriptors: under numpy 2, ``as_numpy()`` sees
    every element as the first one and ``pb_utils.Tensor(name, array)`` sends zero bytes, with
    no error raised. pytriton itself requires numpy<2; DLPack exchange is unaffected.
    """
    try:
        version = importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        return
    if int(version.split(".")[0]) >= 2:
        log.warning(
            "numpy %s is installed, but the pytriton Python backend stub needs numpy<2: "
            "as_numpy() and pb_utils.Tensor(name, ndarray) will silently corrupt tensors "
            "(install 'numpy<2', or exchange tensors with DLPack)", version
        )


def _wheel_environment(pytriton_root: Path) -> Dict[str, str]:
    """Environment for the wheel's binary and its Python backend stub."""
    env = dict(os.environ)
    libdirs = [str(pytriton_root.parents[1] / "nvidia_pytriton.libs")]
    # The stub links against libpython3.X.so, which lives in the base interpreter's LIBDIR.
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        libdirs.append(libdir)
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libdirs)
    # The stub ignores PYTHONPATH and takes its packages from the first python3 on PATH: make that
    # this interpreter (the venv's), so model.py files see the venv's packages.
    env["PATH"] = os.pathsep.join(filter(None, [os.path.dirname(sys.executable), env.get("PATH")]))
    return env


def _read_tail(path: Path, lines: int = LOG_TAIL_LINES, errors_only: bool = False) -> str:
    """The last ``lines`` lines (or error lines) of a text file, or a note if it is unreadable."""
    try:
        with open(path, errors="replace") as handle:
            selected = (line for line in handle if not errors_only or _ERROR_LINE.match(line))
            return "".join(deque(selected, maxlen=lines))
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"


def requests_drained(log_text: str) -> bool:
    """Whether the last stop in a tritonserver log got past its in-flight requests (all answered)."""
    begun = log_text.rfind(_STOP_BEGUN)
    return begun >= 0 and log_text.find(_REQUESTS_DRAINED, begun) >= 0


class TritonServer:
    """One tritonserver process over a model repository, in its own process group.

    ``tritonserver`` picks the binary (default: env TRITONSERVER, else the pytriton wheel's).
    ``backend_dir`` is passed as ``--backend-directory``: with the wheel's binary it is built there
    (default build/triton_backends); with another binary it defaults to that install's own.
    ``extra_args`` come last on the command line, so they override the defaults set here.
    ``watchdog``: once the server is ready, a thread reloads any model whose stub dies (see
    ``musicgen.serving.watchdog``); ``self.watchdog`` is that Watchdog, with its record of repairs.
    """

    #: Default of ``exit_timeout_s``: Triton's own grace period at shutdown, one budget for open HTTP
    #: connections, then in-flight requests, then unloading; stop() waits a bit longer before it kills.
    EXIT_TIMEOUT_S = 10
    #: How often the watchdog looks at the stubs and the repository index.
    WATCHDOG_INTERVAL_S = 0.25

    def __init__(
        self,
        model_repository: PathLike,
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        log_file: Optional[PathLike] = None,
        extra_args: Sequence[str] = (),
        tritonserver: Optional[PathLike] = None,
        backend_dir: Optional[PathLike] = None,
        host: str = "127.0.0.1",
        watchdog: bool = True,
        exit_timeout_s: int = EXIT_TIMEOUT_S,
    ):
        self.model_repository = Path(model_repository).resolve()
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        self.host = host
        self.extra_args = list(extra_args)
        self.exit_timeout_s = exit_timeout_s
        self.tritonserver = tritonserver or os.environ.get("TRITONSERVER")
        self.backend_dir = Path(backend_dir) if backend_dir else None
        if log_file is None:
            # One server per HTTP port at a time, so the port keeps default logs apart.
            log_file = Path(tempfile.gettempdir()) / f"tritonserver-{http_port}.log"
        self.log_path = Path(log_file).resolve()
        self.process: Optional[subprocess.Popen] = None
        self._stopped = False
        self._watch = watchdog
        self.watchdog: Optional[Watchdog] = None
        self._watchdog_stop = threading.Event()
        self._watchdog_thread: Optional[threading.Thread] = None

    # ---- endpoints ---------------------------------------------------------------------------
    @property
    def _client_host(self) -> str:
        # A wildcard bind is reachable locally on the loopback address.
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint, as tritonclient.http expects it."""
        return f"{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint, as tritonclient.grpc expects it."""
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Full URL of the Prometheus metrics page."""
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    @property
    def running(self) -> bool:
        """Whether the tritonserver process has been started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the server's log."""
        return _read_tail(self.log_path, lines)

    def _failure_report(self) -> str:
        """The log's error lines, then its tail: the body of a start-failure message."""
        errors = _read_tail(self.log_path, 20, errors_only=True)
        return (
            f"error lines in {self.log_path}:\n{errors or '(none)'}\n"
            f"last {LOG_TAIL_LINES} lines:\n{self.log_tail()}"
        )

    # ---- lifecycle ---------------------------------------------------------------------------
    def command(self) -> Tuple[List[str], Dict[str, str]]:
        """Return ``(argv, env)`` for the server; builds the wheel's backend folder if needed."""
        if self.tritonserver:
            binary = shutil.which(str(self.tritonserver))
            if binary is None:
                raise TritonServerError(f"tritonserver binary not found: {self.tritonserver}")
            env = dict(os.environ)
            dirs = ["--backend-directory", str(self.backend_dir)] if self.backend_dir else []
        else:
            root = _pytriton_root()
            binary = str(root / "bin" / "tritonserver")
            backend_dir = prepare_backend_dir(root, self.backend_dir or DEFAULT_BACKEND_DIR)
            env = _wheel_environment(root)
            _warn_if_numpy_2()
            dirs = [
                "--backend-directory", str(backend_dir),
                "--cache-directory", str(root / "caches"),
                # The wheel's binary is CPU-only: no GPU metrics, no pinned pool. Together with no config
                # auto-completion they take its startup from 5-9 s down to about 1.5 s. Another binary (the
                # NGC container's) may have a GPU and keeps Triton's defaults.
                "--allow-gpu-metrics=false",
                "--pinned-memory-pool-byte-size=0",
            ]
        argv = [
            binary,
            "--model-repository", str(self.model_repository),
            *dirs,
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            # Our configs are complete (generated): auto-completion would only cost startup time.
            "--disable-auto-complete-config",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            *shm.backend_flags(),  # the Python backend's /dev/shm regions (musicgen.serving.shm)
            # Explicit control, every model loaded at start: the same models as the default mode, and
            # the watchdog may unload and load one. No load order is needed (none calls another in
            # initialize()).
            "--model-control-mode=explicit",
            "--load-model=*",
            *self.extra_args,
        ]
        return argv, env

    def start(self) -> "TritonServer":
        """Spawn tritonserver with its output going to the log file; does not wait for readiness."""
        if self.running:
            raise TritonServerError(f"tritonserver already running (pid {self.process.pid})")
        check_model_repository(self.model_repository)
        try:
            shm.check_room(model_instances(self.model_repository))
        except shm.SharedMemoryError as exc:
            raise TritonServerError(str(exc)) from None
        if not is_loopback(self.host):
            log.warning(
                "listening on %s: the server is reachable from other machines, and Triton has no "
                "authentication (its repository API can unload every model); bind 127.0.0.1 behind a "
                "proxy or a private network unless that is what you want", self.host,
            )
        argv, env = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting %s (log: %s)", " ".join(argv), self.log_path)
        with open(self.log_path, "wb") as log_handle:
            # Own process group: Ctrl-C in a terminal does not hit it directly (stop() shuts it
            # down in order), and stop() can reach the Python backend stubs it forks.
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self._stopped = False
        return self

    def _start_watchdog(self) -> None:
        pid = self.process.pid
        self.watchdog = Watchdog(TritonControl(self.http_url), lambda: stub_processes(pid))
        self.watchdog.learn_stubs()  # before returning ready: a stub that dies from now on is seen dying
        self._watchdog_stop.clear()
        self._watchdog_thread = threading.Thread(
            target=self.watchdog.run, args=(self._watchdog_stop, self.WATCHDOG_INTERVAL_S),
            name="triton-watchdog", daemon=True,
        )
        self._watchdog_thread.start()

    def _stop_watchdog(self) -> None:
        # First of all at shutdown: stubs exiting then are not deaths to repair. A repair under way
        # (a load can take minutes) is not waited for: it fails against the stopping server.
        self._watchdog_stop.set()
        if self._watchdog_thread is not None:
            self._watchdog_thread.join(timeout=1.0)
            self._watchdog_thread = None

    def wait_until_ready(self, timeout_s: float = 60.0) -> None:
        """Block until ``GET /v2/health/ready`` answers 200.

        Raises TritonServerError as soon as the process exits, TritonServerTimeout after
        ``timeout_s``; both carry the tail of the log. Starts the watchdog once ready.
        """
        if self.process is None:
            raise TritonServerError("tritonserver was not started")
        url = f"http://{self.http_url}/v2/health/ready"
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise TritonServerError(
                    f"tritonserver exited with code {code} before it was ready; "
                    + self._failure_report()
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    if response.status == 200:
                        log.info("tritonserver ready at %s", self.http_url)
                        if self._watch and self._watchdog_thread is None:
                            self._start_watchdog()
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet, or models still loading (400)
            if time.monotonic() >= deadline:
                raise TritonServerTimeout(
                    f"tritonserver not ready after {timeout_s:g} s; " + self._failure_report()
                )
            time.sleep(0.1)

    def stop(self, timeout_s: Optional[float] = None) -> Optional[int]:
        """Shut the server down gracefully; idempotent. Returns the exit code, None if never started.

        SIGTERM goes to tritonserver alone (not to its stubs, which it stops itself after the drain):
        it closes its listening sockets at once (new connections are refused), lets open HTTP
        connections and in-flight requests finish within its ``--exit-timeout-secs``, unloads the
        models and exits 0 — or 1 when that budget ran out. After ``timeout_s`` (default: that
        budget + 5 s) it is killed, and whatever is left of its process group (stubs) always is.
        """
        if self.process is None:
            return None
        if self._stopped:
            return self.process.returncode
        self._stop_watchdog()
        if self.process.poll() is None:
            log.info("stopping tritonserver (pid %d): draining requests in flight", self.process.pid)
            self.process.send_signal(signal.SIGTERM)
            timeout_s = self.exit_timeout_s + 5 if timeout_s is None else timeout_s
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver still running %.0f s after SIGTERM; killing it", timeout_s)
        return self.kill()

    def stopped_cleanly(self) -> bool:
        """After stop(): whether every request in flight was answered.

        Exit code 0 says so. So does exit code 1 after the watchdog replaced a dead stub's model, when
        the log shows the requests drained: the version the dead stub served never finishes unloading
        (Triton cannot release it), so the server waits out its exit timeout for it and exits 1.
        """
        if self.process is None or self.process.returncode is None:
            return False
        if self.process.returncode == 0:
            return True
        replaced_a_dead_stub = self.watchdog is not None and any(
            repair.fault.cause != "not loaded" for repair in self.watchdog.repairs)
        return replaced_a_dead_stub and requests_drained(_read_tail(self.log_path, lines=200))

    def kill(self) -> Optional[int]:
        """Stop at once: SIGKILL to the whole process group (server and stubs); idempotent."""
        if self.process is None:
            return None
        self._watchdog_stop.set()  # the thread, if any, exits at its next wake-up
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        self._stopped = True
        return self.process.returncode

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass  # the whole group is already gone

    def __enter__(self) -> "TritonServer":
        """Start and wait until ready (60 s); the server is stopped again if that fails."""
        self.start()
        try:
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m musicgen.serving",
        description="Serve the model repository with Triton until Ctrl-C or SIGTERM: the first lets "
                    "requests in flight finish, a second stops at once.",
        epilog="Example: python -m musicgen.serving --http-port 9000 -- --log-verbose=1",
    )
    parser.add_argument("--repository", default=str(DEFAULT_REPOSITORY),
                        help="model repository (default: %(default)s; built by `make export`)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only; "
                             "0.0.0.0 in a container, with a warning)")
    parser.add_argument("--log", default=str(PROJECT_ROOT / "build" / "tritonserver.log"),
                        help="server log file (default: %(default)s)")
    parser.add_argument("--tritonserver", default=None,
                        help="tritonserver binary (default: env TRITONSERVER, else the pytriton wheel's)")
    parser.add_argument("--backend-dir", default=None,
                        help=f"Triton backend directory (default with the wheel: {DEFAULT_BACKEND_DIR})")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for readiness (default: %(default)s)")
    parser.add_argument("--exit-timeout", type=int, default=TritonServer.EXIT_TIMEOUT_S,
                        help="seconds a stop gives requests in flight (default: %(default)s)")
    parser.add_argument("--no-watchdog", dest="watchdog", action="store_false",
                        help="do not reload models whose Python backend stub died")
    parser.add_argument("extra_args", nargs="*", metavar="TRITON_FLAG",
                        help="extra tritonserver flags, after `--`; they override the launcher's")
    return parser.parse_args(argv)


class _StopRequested(Exception):
    """The first SIGTERM or Ctrl-C: stop gracefully."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the process exit code (0 after a graceful stop)."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        repository = check_model_repository(args.repository)
    except MissingRepositoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = TritonServer(
        repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_file=args.log,
        extra_args=args.extra_args,
        tritonserver=args.tritonserver,
        backend_dir=args.backend_dir,
        host=args.host,
        watchdog=args.watchdog,
        exit_timeout_s=args.exit_timeout,
    )
    signals: List[int] = []

    def on_signal(signum: int, frame) -> None:
        signals.append(signum)
        if len(signals) == 1:
            raise _StopRequested(signal.Signals(signum).name)
        log.warning("second %s: stopping at once, requests in flight are cut", signal.Signals(signum).name)
        server.kill()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        server.start()
        server.wait_until_ready(args.timeout)
        print(
            f"Triton is serving {repository}\n"
            f"  HTTP:    http://{server.http_url}\n"
            f"  gRPC:    {server.grpc_url}\n"
            f"  metrics: {server.metrics_url}\n"
            f"  log:     {server.log_path}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        while server.running:
            time.sleep(0.5)
        print(f"error: tritonserver exited unexpectedly; last lines of its log:\n{server.log_tail()}",
              file=sys.stderr)
        return 1
    except TritonServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except _StopRequested as exc:
        log.info("%s: stopping, requests in flight may finish (a second signal stops at once)", exc)
        code = server.stop()
        if len(signals) == 1 and server.stopped_cleanly():
            if code != 0:
                log.warning("tritonserver exited %s after its exit timeout: the model versions of dead stubs "
                            "never unload; every request in flight was answered", code)
            log.info("stopped cleanly")
            return 0
        if len(signals) == 1:
            print(f"error: tritonserver exited with code {code} while stopping; last lines of its log:\n"
                  f"{server.log_tail()}", file=sys.stderr)
        return 1
    finally:
        server.stop()
