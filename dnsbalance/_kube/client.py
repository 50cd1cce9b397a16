"""The Kubernetes API client: configuration (in-cluster, kubeconfig, or given), the
namespace rule, and the token file a long-running client re-reads."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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


@dataclass(frozen=True)
class ApiSource:
    """Where :func:`load_api_client` takes its configuration from, named before anything
    is loaded: the identity part of the key channels share a watch by (see
    :mod:`dnsbalance._kube.share`). Two sources are equal only when they load the same
    configuration:

    - ``"client"``: an ``ApiClient`` the caller passed, compared by identity (two
      clients configured alike are still two: either may carry its own headers, hooks
      or pool);
    - ``"kubeconfig"``: the files read (real paths, every file of ``KUBECONFIG`` when
      the loader merges them), the context asked for (``None``: the file's current one)
      and a SHA-256 of the files' bytes, so a rewritten kubeconfig is a new source;
    - ``"in-cluster"``: the pod's service account: the API's host and port and the
      account folder. The token file's contents are not part of it: a rotated token is
      the same identity, re-read before each request.
    """

    kind: Literal["client", "kubeconfig", "in-cluster"]
    given: _Same | None = None
    load_path: str | None = None
    """The kubeconfig handed to the loader (None: its default, ``KUBECONFIG``)."""
    files: tuple[str, ...] = ()
    context: str | None = None
    digest: str = ""
    server: tuple[str, str] = ("", "")


class _Same:
    """An object compared by identity (an ApiClient may define no equality of its own)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


def api_source(
    *,
    api_client: ApiClient | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> ApiSource | None:
    """The configuration :func:`load_api_client` would load, in its order: an explicit
    ``api_client``; an explicit ``kubeconfig`` and/or ``context``; the pod's service
    account; ``KUBECONFIG``'s first file; ``~/.kube/config``. ``None``: none exists.
    Reads the kubeconfig files (for their digest); never the network."""
    if api_client is not None:
        return ApiSource("client", given=_Same(api_client))
    env = os.environ if environ is None else environ
    if kubeconfig is not None or context is not None:
        if kubeconfig is not None:
            path: str | None = os.fspath(kubeconfig)
            files = [os.fspath(kubeconfig)]
        else:  # the loader's default: every file KUBECONFIG lists, merged
            path = None
            listed = env.get("KUBECONFIG") or str((home or Path.home()) / ".kube" / "config")
            files = [p for p in listed.split(os.pathsep) if p]
        return _kubeconfig_source(path, files, context)
    if env.get("KUBERNETES_SERVICE_HOST") and (service_account_dir / "token").is_file():
        server = (env["KUBERNETES_SERVICE_HOST"], env.get("KUBERNETES_SERVICE_PORT", ""))
        return ApiSource(
            "in-cluster", files=(os.path.realpath(service_account_dir),), server=server
        )
    listed = env.get("KUBECONFIG") or str((home or Path.home()) / ".kube" / "config")
    paths = [p for p in listed.split(os.pathsep) if p and Path(p).is_file()]
    return _kubeconfig_source(paths[0], paths[:1], None) if paths else None


def _kubeconfig_source(path: str | None, files: list[str], context: str | None) -> ApiSource:
    digest = hashlib.sha256()
    for name in files:
        digest.update(os.path.realpath(name).encode() + b"\0")
        try:
            digest.update(Path(name).read_bytes())
        except OSError as exc:  # loading will fail and say so; the key only must differ
            digest.update(f"unreadable: {exc.errno}".encode())
        digest.update(b"\0")
    return ApiSource(
        "kubeconfig",
        load_path=path,
        files=tuple(os.path.realpath(name) for name in files),
        context=context,
        digest=digest.hexdigest(),
    )


def load_api_client(
    *,
    api_client: ApiClient | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> ApiClient | None:
    """An ApiClient from the first configuration that exists (:func:`api_source`), or
    ``None``.

    Raises KubernetesError when a configuration exists but cannot be loaded.
    """
    source = api_source(
        api_client=api_client,
        kubeconfig=kubeconfig,
        context=context,
        service_account_dir=service_account_dir,
        environ=environ,
    )
    return None if source is None else load_source(source)


def load_source(source: ApiSource) -> ApiClient:
    """A client for ``source`` (the given one, or a new one the caller closes). Raises
    KubernetesError when the configuration cannot be loaded."""
    if source.given is not None:
        return source.given.value
    client, config, _ = _kubernetes()
    try:
        if source.kind == "in-cluster":
            configuration = _configuration(client)
            account = Path(source.files[0])
            token = account / "token"
            host, port = source.server
            loader = config.incluster_config.InClusterConfigLoader(
                token_filename=str(token),
                cert_filename=str(account / "ca.crt"),
                try_refresh_token=False,
                environ={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port},
            )
            loader.load_and_set(configuration)
            configuration.refresh_api_key_hook = TokenFile(token)
            return client.ApiClient(configuration)
        return _from_kubeconfig(client, config, source.load_path, source.context)
    except config.ConfigException as exc:
        raise KubernetesError(f"cannot load Kubernetes configuration: {exc}") from exc


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
