"""The Kubernetes API client: configuration (in-cluster, kubeconfig, or given), the
namespace rule, and the token file a long-running client re-reads."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dnsbalance._exceptions import KubernetesError

log = logging.getLogger(__name__)

ApiClient = Any  # kubernetes.client.ApiClient (imported lazily: mode="dns" never loads it)


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _kubernetes() -> tuple[Any, Any, Any]:
    """The client's ``client``, ``config`` and ``watch.watch`` modules, typed ``Any``: with
    ``_preload_content=False`` its calls return urllib3 responses its annotations do not
    describe, and its config loaders are untyped."""
    from kubernetes import client, config
    from kubernetes.watch import watch

    return client, config, watch


def load_api_client(
    *,
    api_client: ApiClient | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> ApiClient | None:
    """An ApiClient from the first configuration that exists, or ``None``.

    Raises KubernetesError when a configuration exists but cannot be loaded.
    """
    if api_client is not None:
        return api_client
    client, config, _ = _kubernetes()
    env = os.environ if environ is None else environ
    try:
        if kubeconfig is not None or context is not None:
            return _from_kubeconfig(
                client, config, os.fspath(kubeconfig) if kubeconfig else None, context
            )
        if env.get("KUBERNETES_SERVICE_HOST") and (service_account_dir / "token").is_file():
            configuration = _configuration(client)
            token = service_account_dir / "token"
            loader = config.incluster_config.InClusterConfigLoader(
                token_filename=str(token),
                cert_filename=str(service_account_dir / "ca.crt"),
                try_refresh_token=False,
                environ=env,
            )
            loader.load_and_set(configuration)
            configuration.refresh_api_key_hook = TokenFile(token)
            return client.ApiClient(configuration)
        path = env.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        paths = [p for p in path.split(os.pathsep) if p and Path(p).is_file()]
        if paths:
            return _from_kubeconfig(client, config, paths[0], context)
    except config.ConfigException as exc:
        raise KubernetesError(f"cannot load Kubernetes configuration: {exc}") from exc
    return None


def namespace_for(
    *,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The namespace when neither an argument nor the target names one; one rule for the
    library and every CLI command: in a pod (and no explicit kubeconfig/context) the
    service account's namespace file; else the namespace of the kubeconfig context
    (``context``, else the current one) of ``kubeconfig``, else ``KUBECONFIG``'s first
    file that has one, else ``~/.kube/config``; else ``default``. Reads YAML only: the
    Kubernetes client is not imported."""
    import yaml

    env = os.environ if environ is None else environ
    if kubeconfig is None and context is None:
        namespace_file = service_account_dir / "namespace"
        if env.get("KUBERNETES_SERVICE_HOST") and namespace_file.is_file():
            return namespace_file.read_text(encoding="utf-8").strip() or "default"
    if kubeconfig is not None:
        paths = [os.fspath(kubeconfig)]
    else:
        listed = env.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        paths = [p for p in listed.split(os.pathsep) if p]
    for path in paths:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if not isinstance(loaded, dict):
            continue
        active = context or loaded.get("current-context")
        for entry in loaded.get("contexts") or ():
            if isinstance(entry, dict) and entry.get("name") == active:
                namespace = (entry.get("context") or {}).get("namespace")
                return namespace if isinstance(namespace, str) and namespace else "default"
    return "default"


def _from_kubeconfig(client: Any, config: Any, path: str | None, context: str | None) -> Any:
    """An ApiClient from a kubeconfig with :func:`_configuration`'s settings
    (``new_client_from_config`` takes no configuration before kubernetes 30)."""
    configuration = _configuration(client)
    config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
    return client.ApiClient(configuration)


def _configuration(client: Any) -> Any:
    """A client Configuration whose urllib3 pool never retries: the watcher's backoff is
    the one retry layer, and urllib3's own retries would log WARNINGs of their own
    ("Retrying (Retry(total=2, ...)) after connection broken ...") that reach the user.
    An ``api_client`` the caller passes is left as they made it."""
    configuration = client.Configuration()
    configuration.retries = False
    return configuration


class TokenFile:
    """A refresh hook that reads the token file before each request (a few microseconds
    against an HTTP round trip, and API requests here are rare: a list, then one watch
    every few minutes), so a rotated token is always the one sent."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._token: str | None = None
        self._lock = threading.Lock()

    def __call__(self, configuration: Any) -> None:
        try:
            token = self._path.read_text(encoding="utf-8").strip()
        except OSError:
            return  # keep the token we have; the API will say if it is no good
        if not token:
            return
        with self._lock:
            if token != self._token:
                if self._token is not None:
                    log.info("service-account token file changed; using the new token")
                self._token = token
                # The client's key name changed: "authorization" up to kubernetes 30,
                # "BearerToken" since; set both (each version reads only its own).
                for key in ("BearerToken", "authorization"):
                    configuration.api_key[key] = f"bearer {token}"
                    configuration.api_key_prefix.pop(key, None)
