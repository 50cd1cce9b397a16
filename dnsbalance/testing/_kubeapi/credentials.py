"""Credentials for the fake's clients: a self-signed TLS certificate, the dummy CA of HTTP."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

from kubernetes.client import Configuration
from kubernetes.config.incluster_config import InClusterConfigLoader

DUMMY_CA = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBdummydnsbalancefakekubernetesapinotarealcertificate0000000000\n"
    "-----END CERTIFICATE-----\n"
)


class SelfSignedTLS:
    """A self-signed certificate for the fake's address (needs ``cryptography``, a dev
    dependency), so the in-cluster configuration (always https, checked against the
    service account's ``ca.crt``) can be tested as it runs in a pod."""

    def __init__(self, host: str) -> None:
        import datetime
        import ipaddress
        import tempfile

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kube-apiserver")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self._dir = tempfile.TemporaryDirectory(prefix="fake-kube-tls-")
        self.ca_file = str(Path(self._dir.name) / "ca.crt")
        self._key_file = str(Path(self._dir.name) / "tls.key")
        Path(self.ca_file).write_text(self.cert_pem)
        Path(self._key_file).write_text(key_pem)

    def close(self) -> None:
        self._dir.cleanup()

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, self._key_file)
        return context


def write_kubeconfig(
    path: str | Path, url: str, *, token: str | None, namespace: str, context: str
) -> Path:
    """A kubeconfig (JSON, which is YAML) at ``path`` whose current context is ``url``."""
    user: dict[str, Any] = {"token": token} if token is not None else {}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": user}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": context, "namespace": namespace},
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(config, indent=2) + "\n")
    return target


def write_service_account(
    directory: str | Path, token: str, *, namespace: str, ca_pem: str
) -> Path:
    """``token``, ``namespace`` and ``ca.crt`` in ``directory``, as a pod's service account."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    (target / "token").write_text(token)
    (target / "namespace").write_text(namespace)
    (target / "ca.crt").write_text(ca_pem)
    return target


def incluster_config(
    directory: str | Path, url: str, environ: dict[str, str], *, try_refresh_token: bool
) -> tuple[Configuration, InClusterConfigLoader]:
    """``directory`` loaded by the client's own in-cluster loader, pointed at ``url``."""
    target = Path(directory)
    loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=str(target / "token"),
        cert_filename=str(target / "ca.crt"),
        try_refresh_token=try_refresh_token,
        environ=environ,
    )
    config = Configuration()
    loader.load_and_set(config)  # type: ignore[no-untyped-call]
    loader.host = url  # the refresh hook writes loader.host back on every request
    config.host = url
    return config, loader
