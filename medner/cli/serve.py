"""``medner serve``: Triton Inference Server on the model repository until SIGINT/SIGTERM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medner import config
from medner.cli._app import DEFAULT_REPOSITORY, RepositoryLocationOption, app, fail


@app.command()
def serve(
    repository: RepositoryLocationOption = str(DEFAULT_REPOSITORY),
    host: Annotated[str, typer.Option(help="Address to bind (default: loopback only).")] = "127.0.0.1",
    grpc_port: int = 8001,
    http_port: int = 8000,
    metrics_port: int = 8002,
    gpu: Annotated[bool, typer.Option(help="Use the GPU configurations (configs/gpu.pbtxt).")] = False,
    log_file: Annotated[Path | None, typer.Option(help="Server log (default: none).")] = None,
    admin_key_file: Annotated[Path | None, typer.Option(
        help="File holding the admin key (default: $MEDNER_ADMIN_KEY, else ~/.cache/medner/admin-key, created "
             "with a random key). Loading/unloading models and other administrative endpoints need it.")] = None,
    profile_dir: Annotated[str | None, typer.Option(
        envvar=config.PROFILE_DIR_ENV, help="Write rolling whylogs profiles of every note's features (no text) "
        "to this folder or s3://bucket/prefix (default: off).")] = None,
    profile_window: Annotated[float, typer.Option(help="Profile window length in seconds.")
                              ] = config.DEFAULT_PROFILE_WINDOW_SECONDS,
) -> None:
    """Run Triton Inference Server on the repository until SIGINT/SIGTERM."""
    import signal
    import threading

    from medner.registry import serving_folder
    from medner.s3 import S3Unavailable
    from medner.triton import TritonError, TritonServer
    from medner.triton_control import admin_key

    try:
        folder, champion, source = serving_folder(repository)  # what serves: the recorded champion
    except S3Unavailable as err:
        fail(str(err))
    server = TritonServer(folder, host, grpc_port, http_port, metrics_port, gpu=gpu, log_file=log_file,
                          admin_key=admin_key(admin_key_file), profile_dir=profile_dir,
                          profile_window_seconds=profile_window, version=champion, source=source)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
    except TritonError as err:
        fail(str(err))
    typer.echo(f"Triton ready ({repository} v{champion}): gRPC {server.grpc_url}, HTTP {host}:{http_port}, "
               f"metrics {host}:{metrics_port}"
               f"{' (GPU configs)' if gpu else ''}{f'; profiles to {profile_dir}' if profile_dir else ''}"
               "; Ctrl-C stops it")
    while not stop.wait(1.0):
        if server.process is not None and server.process.poll() is not None:
            fail(f"tritonserver exited with code {server.process.returncode}")
    typer.echo("stopping (in-flight requests finish first)")
    server.stop()
