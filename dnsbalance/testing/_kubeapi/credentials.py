"""Credentials for the fake's clients: a self-signed TLS certificate, the dummy CA of HTTP."""

from __future__ import annotations

import ssl
from pathlib import Path

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
