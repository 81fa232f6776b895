"""``medner serve``: Triton Inference Server on the model repository until SIGINT/SIGTERM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medner import config
from medner.cli._app import DEFAULT_REPOSITORY, EXIT_FAILED, EXIT_USAGE, RepositoryLocationOption, app, fail


@app.command()
def serve(
    repository: RepositoryLocationOption = str(DEFAULT_REPOSITORY),
    host: Annotated[str, typer.Option(help="Address to bind (default: loopback only).")] = "127.0.0.1",
    grpc_port: int = 8001,
    http_port: int = 8000,
    metrics_port: int = 8002,
    gpu: Annotated[bool, typer.Option(help="Use the GPU configurations (configs/gpu.pbtxt).")] = False,
    log_file: Annotated[str, typer.Option(help="Triton's log: a file, or - for standard output.")] = "-",
    admin_key_file: Annotated[Path | None, typer.Option(
        help="File holding the admin key (default: $MEDNER_ADMIN_KEY, else ~/.cache/medner/admin-key, created "
             "with a random key). Loading/unloading models and other administrative endpoints need it.")] = None,
    profile_dir: Annotated[str | None, typer.Option(
        envvar=config.PROFILE_DIR_ENV, help="Write rolling whylogs profiles of every note's features (no text) "
        "to this folder or s3://bucket/prefix (default: off).")] = None,
    profile_window: Annotated[float, typer.Option(help="Profile window length in seconds.")
                              ] = config.DEFAULT_PROFILE_WINDOW_SECONDS,
    follow: Annotated[bool, typer.Option(help="Serve the champion serving.json records, as it changes.")] = True,
    follow_seconds: Annotated[float, typer.Option(help="Seconds between reads.")] = config.DEFAULT_FOLLOW_SECONDS,
    start_timeout: Annotated[float, typer.Option(help="Seconds to wait for Triton to be ready.")] = 600.0,
    triton_arg: Annotated[list[str] | None, typer.Option(
        help="Pass a flag to tritonserver as is, e.g. --triton-arg=--grpc-use-ssl=true (repeatable).")] = None,
) -> None:
    """Run Triton Inference Server on the repository's recorded champion until SIGINT/SIGTERM, following the
    registry. Read only: it never writes the repository."""
    import signal
    import threading

    from medner.follow import Follower
    from medner.registry import NoChampion, serving_folder
    from medner.s3 import S3Unavailable
    from medner.triton import TritonError, TritonServer
    from medner.triton_control import admin_key

    try:
        folder, champion, source = serving_folder(repository)  # what serves: the recorded champion
    except (S3Unavailable, NoChampion) as err:
        fail(str(err), EXIT_USAGE if isinstance(err, NoChampion) else EXIT_FAILED)
    key = admin_key(admin_key_file)
    server = TritonServer(folder, host, grpc_port, http_port, metrics_port, gpu=gpu, log_file=log_file,
                          admin_key=key, profile_dir=profile_dir, profile_window_seconds=profile_window,
                          version=champion, source=source, extra_args=list(triton_arg or []))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start(timeout=start_timeout)
    except TritonError as err:
        fail(str(err))
    typer.echo(f"Triton ready ({repository} v{champion}): gRPC {server.grpc_url}, HTTP {host}:{http_port}, "
               f"metrics {host}:{metrics_port}"
               f"{' (GPU configs)' if gpu else ''}{f'; profiles to {profile_dir}' if profile_dir else ''}"
               f"{f'; following the registry every {follow_seconds:g} s' if follow else ''}; Ctrl-C stops it")
    if follow:  # the record's changes reach this server from a thread of its own
        follower = Follower(str(repository), server.grpc_url, key, champion, gpu, follow_seconds, typer.echo)
        threading.Thread(target=follower.run, args=(stop,), name="medner-follow", daemon=True).start()
    while not stop.wait(1.0):
        if server.process is not None and server.process.poll() is not None:
            fail(f"tritonserver exited with code {server.process.returncode}")
    typer.echo("stopping (in-flight requests finish first)")
    server.stop()
