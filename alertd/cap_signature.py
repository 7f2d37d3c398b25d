"""XML-DSig on CAP: the signature a broadcaster checks before it puts an alert on air.

A CAP 1.2 ``<alert>`` may end with ``ds:Signature`` elements (the OASIS schema allows any
number there), and IPAWS refuses CAP without one. alertd signs every document it emits
(webhook pushes, ``/api/v1/alerts/{id}.cap``, the MQTT feed) with an *enveloped* signature
over the whole alert: RSA-SHA256 or ECDSA-SHA256 by the key's type, SHA-256 digests,
exclusive canonicalisation, and the signing certificate in ``KeyInfo``, so both signxml
and ``xmlsec1 --verify`` check it with nothing but the certificate.

signxml does the cryptography; this module only decides the algorithms, reads the PEM
files once, and keeps signing off the hot path (a document is signed once per alert and
process, the adapters' render cache keeps it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509 import load_pem_x509_certificate
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod, XMLSigner, XMLVerifier, methods
from signxml.exceptions import InvalidInput as _SignxmlInvalidInput
from signxml.exceptions import InvalidSignature

from alertd.errors import InvalidInput, Unauthorized
from alertd.xmlsafe import parse_xml

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"


class SigningConfigError(ValueError):
    """ALERTD_SIGNING_KEY / ALERTD_SIGNING_CERT that cannot be used, said plainly."""


class BadSignature(InvalidInput):
    """A CAP document whose signature does not verify against the issuer's certificate."""


class UnsignedCap(Unauthorized):
    """CAP without a signature from an issuer that registered a certificate: who sent it is unproven."""


def check_certificate(pem: str) -> None:
    """A clear 422 for a ``cap_certificate`` that is not a PEM certificate."""
    try:
        load_pem_x509_certificate(pem.encode("ascii", "replace"))
    except ValueError as exc:
        raise InvalidInput(f"'cap_certificate' is not a PEM certificate alertd can read ({exc}).",
                           field="cap_certificate") from exc  # fmt: skip


@dataclass(frozen=True)
class CapSigner:
    # The loaded key, not its PEM: loading an RSA key validates it (~90 ms), once is enough.
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert_pem: bytes
    method: SignatureMethod

    @classmethod
    def from_files(cls, key_path: str | Path, cert_path: str | Path) -> CapSigner:
        try:
            key_pem, cert_pem = Path(key_path).read_bytes(), Path(cert_path).read_bytes()
        except OSError as exc:
            raise SigningConfigError(f"cannot read the CAP signing key or certificate: {exc}") from exc
        return cls.from_pem(key_pem, cert_pem)

    @classmethod
    def from_pem(cls, key_pem: bytes, cert_pem: bytes) -> CapSigner:
        try:
            key = load_pem_private_key(key_pem, password=None)
            cert = load_pem_x509_certificate(cert_pem)
        except (ValueError, TypeError) as exc:
            raise SigningConfigError(
                f"ALERTD_SIGNING_KEY must be an unencrypted PEM private key and ALERTD_SIGNING_CERT a PEM "
                f"certificate ({exc})"
            ) from exc
        if isinstance(key, rsa.RSAPrivateKey):
            method = SignatureMethod.RSA_SHA256
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            method = SignatureMethod.ECDSA_SHA256
        else:
            raise SigningConfigError("the CAP signing key must be RSA or ECDSA")
        if cert.public_key().public_numbers() != key.public_key().public_numbers():
            raise SigningConfigError("ALERTD_SIGNING_CERT is not the certificate of ALERTD_SIGNING_KEY")
        return cls(key, cert_pem, method)

    def sign(self, document: str | bytes) -> bytes:
        """The CAP document (UTF-8 bytes, as ``to_cap`` gives it) with an enveloped
        ``ds:Signature`` as the alert's last child."""
        root = etree.fromstring(document.encode("utf-8") if isinstance(document, str) else document)
        signer = XMLSigner(method=methods.enveloped, signature_algorithm=self.method,
                           digest_algorithm=DigestAlgorithm.SHA256, c14n_algorithm=EXC_C14N)  # fmt: skip
        signed = signer.sign(root, key=self.key, cert=self.cert_pem.decode())
        return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


def verify(document: bytes, cert_pem: str | bytes) -> None:
    """Raise ``BadSignature`` unless ``document`` carries a valid signature by ``cert_pem``'s key.

    The document is parsed with alertd's hardened parser first (no entities, no network).
    """
    root = parse_xml(document)
    if root.find(f"{{{DSIG_NS}}}Signature") is None:
        raise UnsignedCap("This issuer's CAP must be signed (XML-DSig) with the key of its registered "
                          "certificate; this document carries no ds:Signature. Nothing was sent.")  # fmt: skip
    try:
        XMLVerifier().verify(root, x509_cert=cert_pem if isinstance(cert_pem, str) else cert_pem.decode(),
                             expect_references=1)  # fmt: skip
    except (InvalidSignature, _SignxmlInvalidInput) as exc:
        raise BadSignature(
            f"The CAP signature does not verify with the certificate registered for this issuer ({exc}).",
            field="Signature",
        ) from exc
