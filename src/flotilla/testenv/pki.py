"""A throwaway certificate authority for the test control plane.

Each component gets the identity the bootstrap RBAC policy expects (for example
``system:kube-scheduler``), so the cluster authorizes them the way a kubeadm cluster would
instead of running everything as ``system:masters``.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class ClientIdentity:
    """A Kubernetes user: the certificate CN is the user name, each O a group."""

    file_stem: str
    user: str
    groups: tuple[str, ...] = ()


ADMIN = ClientIdentity("admin", "flotilla-admin", ("system:masters",))
CONTROLLER_MANAGER = ClientIdentity("controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("scheduler", "system:kube-scheduler")
# kubeadm puts this user in kubeadm:cluster-admins and binds that group; we have no such binding,
# so the API server reaches kubelets (logs, exec, port-forward) as a system:masters member.
APISERVER_KUBELET_CLIENT = ClientIdentity(
    "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
)


def node_identity(node: str) -> ClientIdentity:
    """What the Node authorizer expects of a kubelet: user system:node:<name> in system:nodes."""
    return ClientIdentity(f"kubelet-{node}", f"system:node:{node}", ("system:nodes",))


CLIENT_IDENTITIES = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, APISERVER_KUBELET_CLIENT)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


@dataclass(frozen=True)
class CertificateAuthority:
    """The CA key and certificate; it signs every serving and client certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str = "flotilla-testenv-ca") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY * 10)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """The CA that ``write_cluster_pki`` wrote, to sign certificates for nodes added later."""
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{directory / 'ca.key'} is not an EC key")
        return cls(key, x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes()))

    def issue(
        self,
        subject: x509.Name,
        *,
        server_names: tuple[str, ...] = (),
        client: bool = False,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server_names:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            alt: list[x509.GeneralName] = []
            for name in server_names:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(name)))
                except ValueError:
                    alt.append(x509.DNSName(name))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())

    def write_serving(self, directory: Path, stem: str, names: tuple[str, ...]) -> None:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        key, cert = self.issue(subject, server_names=names)
        _write(directory / f"{stem}.key", _key_pem(key), private=True)
        _write(directory / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM))

    def write_client(self, directory: Path, identity: ClientIdentity) -> None:
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in identity.groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, identity.user))
        key, cert = self.issue(x509.Name(attrs), client=True)
        _write(directory / f"{identity.file_stem}.key", _key_pem(key), private=True)
        _write(
            directory / f"{identity.file_stem}.crt", cert.public_bytes(serialization.Encoding.PEM)
        )

    def write(self, directory: Path) -> None:
        _write(directory / "ca.key", _key_pem(self.key), private=True)
        _write(directory / "ca.crt", self.cert.public_bytes(serialization.Encoding.PEM))


APISERVER_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
    "127.0.0.1",
    "10.96.0.1",
)


def write_cluster_pki(directory: Path) -> None:
    """Everything the control plane needs: CA, serving cert, client certs, SA signing key."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create()
    ca.write(directory)
    ca.write_serving(directory, "apiserver", APISERVER_NAMES)
    for identity in CLIENT_IDENTITIES:
        ca.write_client(directory, identity)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(directory / "sa.key", _key_pem(sa_key), private=True)
    _write(
        directory / "sa.pub",
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
