"""``ControlPlane``: etcd, kube-apiserver, kube-controller-manager and CoreDNS on loopback.

Real binaries (``scripts/build-controlplane``), no kubelet and no containers, the way
Go projects test with controller-runtime's envtest, plus the controllers and the DNS
that dnsbalance reads:

- etcd on free loopback ports, data in a temporary directory, no fsync;
- kube-apiserver with its own serving certificate (``--cert-dir``), token
  authentication (an admin token in ``system:masters``), service-account token
  signing and the RBAC authorizer; ``--endpoint-reconciler-type=none``, because it
  refuses a loopback advertise address for the ``kubernetes`` Service's endpoints;
- kube-controller-manager with the controllers that make sense without a kubelet:
  endpointslice, endpointslice mirroring, endpoints, service accounts and their
  tokens, namespace, garbage collector. Node lifecycle stays off: with no kubelet
  heartbeats it would taint the Node and evict the pods;
- CoreDNS with the kubernetes plugin in the shape kubeadm writes (``cluster.local``,
  TTL 5, ``pods insecure``, ``cache 30``, ``loadbalance``), without ``forward``
  (nothing leaves the machine).

Pods are API objects whose status the test sets (:mod:`.cluster`); their gRPC
backends run on a :class:`~.podnet.PodNetwork` (root only). Everything runs as
children of this process, is stopped by PID and leaves no files behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from .assets import ControlPlaneError, find_assets
from .cluster import ClusterObjects, has_default_account
from .process import Component, free_port, wait_until

if TYPE_CHECKING:
    import kubernetes.client

    from .podnet import PodNetwork

CLUSTER_DOMAIN = "cluster.local"
SERVICE_CIDR = "10.96.0.0/16"
CONTROLLERS = (
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "endpoints-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "garbage-collector-controller",  # a deleted Service's slices go with it (ownerReferences)
)


class ControlPlane(ClusterObjects):
    """A real Kubernetes control plane on loopback for tests; a context manager.

    ``with ControlPlane() as cp:`` starts etcd, kube-apiserver,
    kube-controller-manager and CoreDNS (about 5 s), and stops them on exit.

    - ``cp.kubeconfig``: an admin kubeconfig (path); ``cp.api_client()`` an official
      client ``ApiClient`` on it; ``cp.kubeconfig_for(namespace, service_account)``
      one with that service account's token (TokenRequest), for RBAC tests.
    - ``cp.dns_address``: CoreDNS, ``"127.0.0.1:PORT"``.
    - ``cp.pod_network``: the pods' network (root only, made on first use).
    - The cluster helpers of :class:`~.cluster.ClusterObjects`: namespaces, Nodes
      with zones, Pods with a status and a real backend, Services.

    ``assets`` is the directory of the binaries (default: see
    :func:`~.assets.default_assets`). ``start_timeout`` bounds each component's start.
    ``apiserver_flags`` are added to kube-apiserver's command line (``"--flag=value"``;
    a flag given twice takes the last value).
    """

    def __init__(
        self,
        *,
        assets: str | Path | None = None,
        start_timeout: float = 60.0,
        apiserver_flags: Sequence[str] = (),
    ) -> None:
        self._binaries = find_assets(assets)
        self._apiserver_flags = tuple(apiserver_flags)
        self._start_timeout = start_timeout
        self._dir = Path(tempfile.mkdtemp(prefix="dnsbalance-controlplane-"))
        self._components: list[Component] = []
        self._pod_network: PodNetwork | None = None
        self._admin_token = secrets.token_hex(16)
        self._api_port = 0
        self._dns_port = 0
        self._etcd_url = ""
        self._client: kubernetes.client.ApiClient | None = None
        self.startup_seconds: dict[str, float] = {}
        self._started = False
        self._closed = False
        super().__init__()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Self:
        if self._started:
            raise RuntimeError("ControlPlane is already started")
        self._started = True
        try:
            self._start_etcd()
            self._start_apiserver()
            self._start_controller_manager()
            self._start_coredns()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop everything this control plane started (by PID) and remove its files."""
        if self._closed:
            return
        self._closed = True
        if self._pod_network is not None:
            self._pod_network.close()
        if self._client is not None:
            self._client.close()  # type: ignore[no-untyped-call]
        for component in reversed(self._components):
            component.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    @contextlib.contextmanager
    def controllers_paused(self) -> Iterator[None]:
        """kube-controller-manager stopped (SIGSTOP to its PID) for the block and continued
        after (SIGCONT): the EndpointSlice controller falls behind the pods, as a busy or
        restarting one does, while the API server and its watches go on."""
        manager = next(c for c in self._components if c.name == "kube-controller-manager")
        os.kill(manager.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(manager.pid, signal.SIGCONT)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def check(self) -> None:
        """Raise :class:`ControlPlaneError` (naming it, with its log's tail) when a
        component has died."""
        for component in self._components:
            component.check()

    # -- what tests use --------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self._api_port}"

    @property
    def etcd_url(self) -> str:
        """etcd's client URL (``http://127.0.0.1:PORT``), e.g. to compact its history."""
        return self._etcd_url

    @property
    def ca_file(self) -> Path:
        """The API server's serving certificate bundle (its CA included)."""
        return self._dir / "pki" / "apiserver.crt"

    @property
    def kubeconfig(self) -> Path:
        """An admin kubeconfig (``system:masters``)."""
        return self._dir / "admin.kubeconfig"

    @property
    def dns_address(self) -> str:
        """CoreDNS, ``"127.0.0.1:PORT"``."""
        return f"127.0.0.1:{self._dns_port}"

    @property
    def pod_network(self) -> PodNetwork:
        """The pods' network namespace (made on first use; needs root)."""
        if self._pod_network is None:
            from .podnet import PodNetwork

            self._pod_network = PodNetwork()
        return self._pod_network

    def api_client(self) -> kubernetes.client.ApiClient:
        """A new official-client ``ApiClient`` with admin rights (close it when done)."""
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        return client.ApiClient(configuration)

    def write_kubeconfig(
        self,
        path: str | Path,
        *,
        token: str | None = None,
        namespace: str = "default",
        user: str = "user",
    ) -> Path:
        """A kubeconfig at ``path`` that authenticates with ``token`` (default: the admin
        token) and whose context's namespace is ``namespace``."""
        if token is None:
            token = self._admin_token
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "controlplane",
                    "cluster": {"server": self.api_url, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": user,
                    "context": {"cluster": "controlplane", "user": user, "namespace": namespace},
                }
            ],
            "current-context": user,
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(config, indent=2) + "\n")
        return target

    def kubeconfig_for(
        self,
        namespace: str,
        service_account: str,
        *,
        path: str | Path | None = None,
        expiration_seconds: int = 3600,
    ) -> Path:
        """A kubeconfig with a token of ``namespace/service_account`` (TokenRequest;
        the ServiceAccount is created when missing)."""
        from kubernetes import client

        core = client.CoreV1Api(self.admin)
        with contextlib.suppress(client.ApiException):
            account = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=service_account))
            core.create_namespaced_service_account(namespace, account)
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        answer = core.create_namespaced_service_account_token(service_account, namespace, request)
        if answer.status is None or not answer.status.token:
            raise ControlPlaneError(f"TokenRequest for {namespace}/{service_account}: no token")
        token: str = answer.status.token
        if path is None:
            path = self._dir / f"sa-{namespace}-{service_account}-{secrets.token_hex(4)}.kubeconfig"
        return self.write_kubeconfig(path, token=token, namespace=namespace, user=service_account)

    @property
    def admin(self) -> kubernetes.client.ApiClient:
        """The control plane's own admin ``ApiClient`` (closed with it)."""
        if self._client is None:
            self._client = self.api_client()
        return self._client

    # -- start-up --------------------------------------------------------------------

    def _component(self, name: str, argv: list[str]) -> Component:
        component = Component(name, argv, self._dir / f"{name}.log")
        self._components.append(component)
        return component

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self._etcd_url = f"http://127.0.0.1:{client}"
        etcd = self._component(
            "etcd",
            [
                str(self._binaries["etcd"]),
                "--name=controlplane",
                f"--data-dir={self._dir / 'etcd'}",
                f"--listen-client-urls={self._etcd_url}",
                f"--advertise-client-urls={self._etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=controlplane=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self.startup_seconds["etcd"] = wait_until(
            "etcd /health",
            lambda: _http_ok(f"{self._etcd_url}/health", lambda body: b'"true"' in body),
            timeout=self._start_timeout,
            components=[etcd],
        )

    def _start_apiserver(self) -> None:
        self._api_port = free_port()
        (self._dir / "pki").mkdir()
        key = self._dir / "service-account.key"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        tokens = self._dir / "tokens.csv"
        tokens.write_text(f'{self._admin_token},admin,admin-uid,"system:masters"\n')
        apiserver = self._component(
            "kube-apiserver",
            [
                str(self._binaries["kube-apiserver"]),
                f"--etcd-servers={self._etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self._api_port}",
                f"--cert-dir={self._dir / 'pki'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={key}",
                f"--service-account-signing-key-file={key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--endpoint-reconciler-type=none",
                "--v=0",
                *self._apiserver_flags,
            ],
        )
        self.startup_seconds["kube-apiserver"] = wait_until(
            "kube-apiserver /readyz",
            lambda: (
                self.ca_file.exists()
                and _https_ok(f"{self.api_url}/readyz", self.ca_file, self._admin_token)
            ),
            timeout=self._start_timeout,
            components=[apiserver],
        )
        self.write_kubeconfig(self.kubeconfig, token=self._admin_token, user="admin")

    def _start_controller_manager(self) -> None:
        from kubernetes import client

        manager = self._component(
            "kube-controller-manager",
            [
                str(self._binaries["kube-controller-manager"]),
                f"--kubeconfig={self.kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={self._dir / 'service-account.key'}",
                f"--root-ca-file={self.ca_file}",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=0",
            ],
        )
        core = client.CoreV1Api(self.admin)
        self.startup_seconds["kube-controller-manager"] = wait_until(
            "kube-controller-manager (the default ServiceAccount)",
            lambda: has_default_account(core, "default"),
            timeout=self._start_timeout,
            components=[self._components[1], manager],
        )

    def _start_coredns(self) -> None:
        self._dns_port = free_port()
        ready, health = free_port(), free_port()
        corefile = self._dir / "Corefile"
        corefile.write_text(
            f""".:{self._dns_port} {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {self.kubeconfig} admin
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 30
    loadbalance
}}
"""
        )
        coredns = self._component(
            "coredns", [str(self._binaries["coredns"]), "-conf", str(corefile)]
        )
        self.startup_seconds["coredns"] = wait_until(
            "CoreDNS /ready",
            lambda: _http_ok(f"http://127.0.0.1:{ready}/ready", lambda body: True),
            timeout=self._start_timeout,
            components=[self._components[1], coredns],
        )


def _http_ok(url: str, accept: object) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
            body = response.read()
    except (OSError, urllib.error.URLError):
        return False
    return bool(accept(body)) if callable(accept) else True


def _https_ok(url: str, ca_file: Path, token: str) -> bool:
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError):
        return False
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False
