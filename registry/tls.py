"""HTTPS for the node: the operator's certificate, or a self-signed one generated once and kept in the data dir.

Authentication only counts on a secure channel (research §4), so ``idnode serve --tls`` must work with no
preparation: without ``--tls-cert``/``--tls-key`` a self-signed ECDSA P-256 certificate for ``localhost``,
``127.0.0.1`` and ``::1`` is generated with ``cryptography`` into ``<data-dir>/tls/`` (key file mode 0600) and
reused on later starts. Production deployments name their own files, or terminate TLS in a proxy listed in
``trusted_proxies``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from resolver.config import Settings
from resolver.errors import ConfigError

__all__ = ["ensure_self_signed", "server_context"]

_VALIDITY = datetime.timedelta(days=825)


def ensure_self_signed(directory: Path) -> tuple[Path, Path]:
    """``(cert, key)`` in ``directory``, generated on first use."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idnode")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    alt_names.append(x509.IPAddress(ipaddress.ip_address("::1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context to serve with, or None when ``tls`` is off; ConfigError for unusable files."""
    if not settings.tls:
        return None
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("tls_cert/tls_key: give both files, or neither for a generated self-signed pair")
    if settings.tls_cert is None or settings.tls_key is None:
        cert, key = ensure_self_signed(settings.data_dir / "tls")
    else:
        cert, key = settings.tls_cert, settings.tls_key
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_cert/tls_key: cannot load {cert} and {key}: {exc}") from None
    return context
