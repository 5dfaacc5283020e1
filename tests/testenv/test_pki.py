"""Certificates the control plane needs, checked the way TLS peers will check them."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flotilla.testenv.pki import CONTROLLER_MANAGER, write_cluster_pki


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ca)
    return True


def test_cluster_pki_chains_to_one_ca(tmp_path: Path) -> None:
    write_cluster_pki(tmp_path)
    ca = _load(tmp_path / "ca.crt")
    for stem in ("apiserver", "admin", "controller-manager", "scheduler"):
        assert _signed_by(_load(tmp_path / f"{stem}.crt"), ca)
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0, "private keys must be owner-only"
    assert (tmp_path / "sa.key").stat().st_mode & 0o077 == 0


def test_serving_certificate_names_loopback_and_the_service(tmp_path: Path) -> None:
    write_cluster_pki(tmp_path)
    cert = _load(tmp_path / "apiserver.crt")
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in names.get_values_for_type(x509.DNSName)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage


def test_client_certificates_carry_the_rbac_identity(tmp_path: Path) -> None:
    write_cluster_pki(tmp_path)
    admin = _load(tmp_path / "admin.crt").subject
    assert admin.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    cm = _load(tmp_path / "controller-manager.crt").subject
    assert cm.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CONTROLLER_MANAGER.user
    assert not cm.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
