"""wss://: the engine served with TLS, the window's client verifying the certificate."""

from __future__ import annotations

import datetime
import ipaddress

import pytest

from pmgui.service.client import RemoteEngine
from pmgui.service.settings import ServiceConfig
from tests.service_support import served_engine


def self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pmgui test engine")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_wss_with_a_trusted_certificate_and_refusals_without(tmp_path):
    cert, key = self_signed(tmp_path)
    with served_engine(tmp_path, settings=ServiceConfig(tls_cert=cert, tls_key=key)) as (
            _engine, service, tokens):
        assert service.tls and service.url.startswith("wss://127.0.0.1:")
        remote = RemoteEngine(service.url, tokens["read"], cafile=cert)
        remote.start(timeout=60)
        try:
            assert remote.connected and remote.scope == "read" and remote.syncs == 1
        finally:
            remote.stop()
        untrusted = RemoteEngine(service.url, tokens["read"])  # the system CAs only
        with pytest.raises(Exception, match="certificate verify failed|CERTIFICATE_VERIFY"):
            untrusted.start(timeout=60)
        plain = RemoteEngine(service.url.replace("wss://", "ws://"), tokens["read"])
        with pytest.raises(Exception, match="cannot reach|refused|closed"):
            plain.start(timeout=60)
