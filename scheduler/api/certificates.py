"""Management certificates: `/{subscription}/certificates`."""

from __future__ import annotations

import base64

from flask import Blueprint, Response, g, request

from scheduler.api import xml
from scheduler.api.responses import xml_response
from scheduler.api.runtime import runtime, snapshot, transaction
from scheduler.domain.durations import format_datetime
from scheduler.errors import BadRequest, InvalidXmlRequest
from scheduler.security import pki
from scheduler.services import certificates as services
from scheduler.services.records import CertificateRecord

bp = Blueprint("certificates", __name__)


def certificate_xml(record: CertificateRecord, root: bool = False) -> str:
    """A certificate as ASM's `<SubscriptionCertificate>`."""
    certificate = pki.load_certificate(record.der)
    return xml.element(
        "SubscriptionCertificate",
        xml.element("SubscriptionCertificatePublicKey",
                    value=base64.b64encode(pki.public_key_der(certificate)).decode()),
        xml.element("SubscriptionCertificateThumbprint", value=record.thumbprint),
        xml.element("SubscriptionCertificateData", value=base64.b64encode(record.der).decode()),
        xml.element("Created", value=format_datetime(record.created_at)),
        root=root,
    )


@bp.get("/<sub>/certificates", strict_slashes=False)
def list_certificates(sub: str) -> Response:
    """The subscription's management certificates."""
    with snapshot() as session:
        records = services.list_certificates(session, g.subscription_id)
        return xml_response(xml.document("SubscriptionCertificates",
                                         *(certificate_xml(r) for r in records)))


@bp.get("/<sub>/certificates/<thumbprint>")
def get_certificate(sub: str, thumbprint: str) -> Response:
    """One management certificate."""
    with snapshot() as session:
        record = services.get_certificate(session, g.subscription_id, thumbprint)
        return xml_response(certificate_xml(record, root=True))


@bp.post("/<sub>/certificates", strict_slashes=False)
def add_certificate(sub: str) -> Response:
    """Register a certificate; it works for new and open connections at once."""
    root = xml.parse_xml(request.get_data(), xml.SUBSCRIPTION_CERTIFICATE)
    data = xml.text(root, "SubscriptionCertificateData", max_length=65536)
    if not data:
        raise InvalidXmlRequest("<SubscriptionCertificateData> is required.")
    try:
        certificate = pki.load_certificate(xml.base64_text(data, "SubscriptionCertificateData"))
    except ValueError:
        raise BadRequest("<SubscriptionCertificateData> is not a DER X.509 certificate.") \
            from None
    rt = runtime()
    with transaction() as session:
        services.register_certificate(
            session, g.subscription_id, certificate, rt.clock.now(),
            expected_thumbprint=xml.text(root, "SubscriptionCertificateThumbprint") or None,
        )
    return Response(b"", status=201)


@bp.delete("/<sub>/certificates/<thumbprint>")
def delete_certificate(sub: str, thumbprint: str) -> Response:
    """Unregister a certificate; requests made with it fail from now on."""
    with transaction() as session:
        services.delete_certificate(session, g.subscription_id, thumbprint,
                                    runtime().clock.now())
    return Response(b"", status=200)
