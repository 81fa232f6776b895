"""Start and stop a real Triton Inference Server: the ``tritonserver`` binary shipped in the
``nvidia-pytriton`` wheel, with the python backend stub for the running Python."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from medner.config import PROFILE_DIR_ENV, PROFILE_WINDOW_ENV
from medner.triton_control import ADMIN_HEADER, load_version

SITE_PACKAGES_ENV = "MEDNER_SITE_PACKAGES"  # read by the python models' model.py (the stub ignores PYTHONPATH)
# A Triton installation to run instead of the bundled server: NVIDIA's images have it in /opt/tritonserver, with the
# onnxruntime and TensorRT backends the GPU configs need and a python backend built for the image's Python.
TRITON_HOME_ENV = "MEDNER_TRITON_HOME"
# Administrative endpoints, closed to requests without the admin key: loading and unloading models (and the
# repository index), shared-memory registration, statistics, tracing and log settings. Inference, health
# and metadata stay open.
RESTRICTED = "model-repository,shared-memory,statistics,trace,logging"


class TritonError(RuntimeError):
    """The server could not be started or did not become ready."""


def model_parameters(args: dict) -> dict[str, str]:
    """The ``parameters`` of a python-backend model's config, from ``initialize(args)``."""
    config = json.loads(args["model_config"])
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 right now (for tests and benchmarks)."""
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _pytriton_root() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonError("the tritonserver binary comes with nvidia-pytriton: pip install nvidia-pytriton==0.7.0")
    return Path(next(iter(spec.submodule_search_locations)))


def _triton_home() -> Path | None:
    return Path(os.environ[TRITON_HOME_ENV]) if os.environ.get(TRITON_HOME_ENV) else None


def backend_directory(target: Path) -> Path:
    """A backend folder whose python backend has the stub for this Python next to it."""
    source = _pytriton_root() / "tritonserver" / "backends" / "python"
    stub = (_pytriton_root() / "tritonserver" / "python_backend_stubs"
            / f"{sys.version_info.major}.{sys.version_info.minor}" / "triton_python_backend_stub")
    if not stub.exists():
        raise TritonError(f"no python backend stub for Python {sys.version_info.major}.{sys.version_info.minor}")
    python = target / "python"
    python.mkdir(parents=True, exist_ok=True)
    for item in (*source.iterdir(), stub):
        if item.is_file() and not (python / item.name).exists():
            shutil.copy2(item, python / item.name)
    return target


def parent_death_launcher() -> list[str]:
    """The command prefix that makes the server receive SIGTERM when the process that started it dies, even
    by SIGKILL, so no orphaned tritonserver keeps the ports: util-linux's ``setpriv --pdeathsig`` sets Linux's
    PR_SET_PDEATHSIG and execs the server (the setting survives exec). A launcher rather than a Python hook in
    the child: Python code between fork and exec can crash or deadlock the child of a process with threads (a
    gRPC client, a notebook). Empty where ``setpriv`` is missing: the server then outlives a killed parent.

    Linux sends the signal when the *thread* that started the server ends: start it from a thread that lives
    as long as the server (the main thread, as ``medner serve`` and promotion do)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def _libpython_dir() -> list[str]:
    """The folder of this Python's shared libpython, when it has one: the stub then runs the very runtime
    whose standard library it imports. With the system libpython (3.11.2 here) and this Python's (3.11.7)
    standard library, C modules built for the newer runtime fail to load (``_ssl``: undefined symbol
    ``_PyModule_Add``), so ``ssl`` (boto3, whylogs) could not be imported in the python models."""
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    return [libdir] if libdir and library and (Path(libdir) / library).exists() else []


@dataclass
class TritonServer:
    """``with TritonServer(repository) as server: ...`` starts tritonserver and waits until ready."""

    repository: Path
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    gpu: bool = False  # use each model's configs/gpu.pbtxt where it has one
    admin_key: str | None = None  # set: explicit model control, administrative endpoints need this key
    version: int | None = None  # with admin_key: serve this version of every model (load_version), not the newest
    log_verbose: int = 0
    log_file: Path | str | None = None  # None: discarded; "-": this process's standard output (medner serve)
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    profile_dir: str | None = None  # set: the ner models write rolling whylogs profiles there (folder or s3://)
    profile_window_seconds: float | None = None  # profile window length (default DEFAULT_PROFILE_WINDOW_SECONDS)
    source: str = ""  # Triton's --model-repository when not the folder: s3://... (the folder is its mirror)

    @classmethod
    def on_free_ports(cls, repository: Path, **options: object) -> TritonServer:
        """A server (not started) on gRPC, HTTP and metrics ports free on 127.0.0.1 now: tests, benchmarks,
        the promotion smoke test."""
        grpc_port, http_port, metrics_port = free_ports(3)
        return cls(repository, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, **options)

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def command(self, backends: Path) -> list[str]:
        binary = (_triton_home() or _pytriton_root() / "tritonserver") / "bin" / "tritonserver"
        args = [
            str(binary), f"--model-repository={self.source or self.repository.resolve()}",
            f"--backend-directory={backends}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false", f"--log-verbose={self.log_verbose}", "--exit-timeout-secs=30",
        ]
        if self.gpu:
            args.append("--model-config-name=gpu")
        if self.admin_key:
            restricted = f"{RESTRICTED}:{ADMIN_HEADER}={self.admin_key}"
            args += ["--model-control-mode=explicit", f"--grpc-restricted-protocol={restricted}",
                     f"--http-restricted-api={restricted}"]
            if self.version is None:
                args.append("--load-model=*")  # else start() loads the pinned version
        return args + self.extra_args

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if not _triton_home():  # the bundled server's own libraries, and this Python's libpython for its stub
            libs = _pytriton_root().parent / "nvidia_pytriton.libs"
            env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libs), *_libpython_dir(),
                                                                 env.get("LD_LIBRARY_PATH", "")) if p)
        paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                 str(Path(__file__).resolve().parents[1])]
        env[SITE_PACKAGES_ENV] = os.pathsep.join(dict.fromkeys(paths))
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        if self.profile_dir:  # read by model_repository/ner/model.py (monitoring.profiles.profiler_from_env)
            env[PROFILE_DIR_ENV] = (self.profile_dir if str(self.profile_dir).startswith("s3://")
                                         else str(Path(self.profile_dir).resolve()))
        if self.profile_window_seconds:
            env[PROFILE_WINDOW_ENV] = str(self.profile_window_seconds)
        return env

    def start(self, timeout: float = 120.0) -> TritonServer:
        self._backends = tempfile.TemporaryDirectory(prefix="medner-triton-backends-")
        home = _triton_home()
        backends = home / "backends" if home else backend_directory(Path(self._backends.name))
        log = (None if str(self.log_file) == "-" else open(self.log_file, "ab")  # noqa: SIM115
               if self.log_file else subprocess.DEVNULL)
        self.process = subprocess.Popen([*parent_death_launcher(), *self.command(backends)],
                                        env=self.environment(), stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.wait_ready(timeout)
        if self.admin_key and self.version is not None:
            try:
                load_version(self.grpc_url, self.admin_key, self.repository, self.version, self.gpu, timeout)
            except Exception as err:
                self.stop()
                raise TritonError(f"could not load version {self.version}: {err}") from err
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.http_port}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise TritonError(f"tritonserver exited with code {self.process.returncode}"
                                  + (f"; see {self.log_file}" if self.log_file and str(self.log_file) != "-"
                                     else ""))
            if self.ready():
                return
            time.sleep(0.5)
        self.stop()
        raise TritonError(f"tritonserver not ready after {timeout:.0f}s")

    def stop(self, timeout: float = 45.0) -> None:
        """SIGTERM, then wait (Triton takes seconds to drain and exit); SIGKILL as a last resort."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            try:  # python backend stubs left behind by the server (they share its process group)
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if getattr(self, "_backends", None) is not None:
            self._backends.cleanup()
            self._backends = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
