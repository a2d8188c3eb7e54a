"""Ray as the compute engine (``RAG_COMPUTE=ray``): the cluster the settings name, or a local one.

A local cluster is started in this process with Ray's token authentication (on by default since Ray
2.5x; never turned off here), the dashboard off and ports of Ray's own choosing (6379, Ray's usual GCS
port, is often Redis's). A cluster at ``RAG_RAY_ADDRESS`` is the operator's, with the authentication it
was started with.
"""

from __future__ import annotations

import threading
from typing import Any

from rag.errors import EngineUnavailableError
from rag.settings import Settings

_lock = threading.Lock()


def ray_module(settings: Settings) -> Any:
    """``ray``, connected to the settings' cluster (started once per process)."""
    try:
        import ray
    except ImportError as exc:  # the optional extra
        raise EngineUnavailableError("RAG_COMPUTE=ray needs Ray: pip install -e '.[scale]'") from exc
    with _lock:
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if settings.ray_address:
                ray.init(address=settings.ray_address, **options)
            else:
                ray.init(num_cpus=settings.ray_cpus, **options)
            ray.data.DataContext.get_current().enable_progress_bars = False  # the writer shows its own
    return ray


def actor_settings(settings: Settings) -> Settings:
    """The settings an actor runs with: one torch thread, so that actors, not threads, share the CPUs."""
    return settings.model_copy(update={"torch_threads": 1, "compute": "local"})
