"""Certificates for TLS tests, made with `cryptography`, and the key and trust stores Apache ZooKeeper
reads (JKS through pyjks, PKCS12, PEM)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jks
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

PASSWORD = "apassword"
_DER = serialization.Encoding.DER
_PEM = serialization.Encoding.PEM


@dataclass
class Identity:
    """A private key and its certificate chain (leaf first)."""

    key: rsa.RSAPrivateKey
    chain: list[x509.Certificate]

    @property
    def cert(self) -> x509.Certificate:
        return self.chain[0]

    def write_jks(self, path: Path, password: str = PASSWORD) -> Path:
        pkcs8 = self.key.private_bytes(_DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        store = jks.KeyStore.new("jks", [jks.PrivateKeyEntry.new("key", [c.public_bytes(_DER) for c in self.chain],
                                                                 pkcs8, "pkcs8")])
        store.save(str(path), password)
        return path

    def write_pkcs12(self, path: Path, password: str = PASSWORD) -> Path:
        path.write_bytes(pkcs12.serialize_key_and_certificates(
            b"key", self.key, self.cert, self.chain[1:] or None,
            serialization.BestAvailableEncryption(password.encode())))
        return path

    def write_pem(self, path: Path) -> Path:
        """Key and chain in one file, as Apache's PEM key store takes them (the key unencrypted)."""
        key = self.key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        path.write_bytes(key + b"".join(c.public_bytes(_PEM) for c in self.chain))
        return path

    def write_cert_and_key(self, cert_path: Path, key_path: Path) -> None:
        """The leaf certificate and a PKCS#1 key in two files, as Python and kazoo clients load them."""
        cert_path.write_bytes(self.cert.public_bytes(_PEM))
        key_path.write_bytes(self.key.private_bytes(_PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                                    serialization.NoEncryption()))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zkfast"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _builder(subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey, ca: bool) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))


class Authority:
    """A certificate authority that issues leaf certificates."""

    def __init__(self, common_name: str) -> None:
        self.key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self.cert = _builder(name, name, self.key, True).sign(self.key, hashes.SHA256())

    def issue(self, common_name: str, ips: Sequence[str] = (), dns: Sequence[str] = ()) -> Identity:
        key = _new_key()
        builder = _builder(_name(common_name), self.cert.subject, key, False)
        alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        return Identity(key, [builder.sign(self.key, hashes.SHA256()), self.cert])

    def write_jks_truststore(self, path: Path, password: str = PASSWORD) -> Path:
        jks.KeyStore.new("jks", [jks.TrustedCertEntry.new("ca", self.cert.public_bytes(_DER))]).save(str(path), password)
        return path

    def write_pkcs12_truststore(self, path: Path, password: str = PASSWORD) -> Path:
        path.write_bytes(pkcs12.serialize_key_and_certificates(
            None, None, None, [self.cert], serialization.BestAvailableEncryption(password.encode())))
        return path

    def write_pem(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(_PEM))
        return path
