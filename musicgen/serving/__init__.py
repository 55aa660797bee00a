"""Operations: run tritonserver over the model repository, keep its models healthy, stop it gently.

- ``launcher``: the TritonServer process wrapper and ``python -m musicgen.serving``;
- ``watchdog``: reloads a model whose Python backend stub died or froze;
- ``stubs``: the server's stub processes, read from /proc;
- ``control``: readiness and the repository (load/unload) API over HTTP.

The serving logic the models run lives elsewhere in ``musicgen``; nothing here is imported by a model.
"""
from .launcher import (
    DEFAULT_REPOSITORY,
    PROJECT_ROOT,
    MissingRepositoryError,
    TritonServer,
    TritonServerError,
    TritonServerTimeout,
    check_model_repository,
    free_port,
    free_ports,
    is_loopback,
    main,
)

__all__ = [
    "DEFAULT_REPOSITORY", "PROJECT_ROOT", "MissingRepositoryError", "TritonServer", "TritonServerError",
    "TritonServerTimeout", "check_model_repository", "free_port", "free_ports", "is_loopback", "main",
]
