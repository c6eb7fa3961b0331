"""TLS from --tls-cert/--tls-key, and X-Forwarded-* trusted only from configured proxies."""

from __future__ import annotations

import datetime as dt
import ssl

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.multinode
async def test_serves_https_with_given_certificate(nodes, tmp_path):
    cert, key = _self_signed(tmp_path)
    node = await nodes.start(env={"FOYER_TLS_CERT": str(cert), "FOYER_TLS_KEY": str(key)})
    ctx = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"https://127.0.0.1:{node.port}/healthz", ssl=ctx) as resp:
            assert resp.status == 200
            assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


async def test_forwarded_headers_ignored_from_untrusted_peer(app_factory, settings_factory, http):
    srv = await app_factory(settings_factory())
    async with http.get(srv.make_url("/healthz"), headers={"X-Forwarded-Proto": "https"}) as resp:
        # An untrusted peer cannot make the node believe the request came over HTTPS.
        assert "Strict-Transport-Security" not in resp.headers


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("198.51.100.9", "203.0.113.7", "198.51.100.9"),       # untrusted peer: header ignored
        ("10.0.0.2", "203.0.113.7", "203.0.113.7"),            # trusted proxy: client from header
        ("10.0.0.2", "1.2.3.4, 203.0.113.7, 10.0.0.3", "203.0.113.7"),  # spoofed left part ignored
        ("10.0.0.2", "", "10.0.0.2"),
    ],
)
def test_client_ip_resolution(peer, xff, expected):
    from server.middlewares import _parse_networks, resolve_client

    nets = _parse_networks(("10.0.0.0/8",))
    assert resolve_client(peer, xff, "https", "http", nets)[0] == expected


async def test_forwarded_headers_honoured_from_trusted_proxy(app_factory, settings_factory, http):
    srv = await app_factory(settings_factory(trusted_proxies=("127.0.0.1/32",)))
    async with http.get(srv.make_url("/healthz"), headers={"X-Forwarded-Proto": "https",
                                                           "X-Forwarded-For": "203.0.113.7"}) as resp:
        assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
