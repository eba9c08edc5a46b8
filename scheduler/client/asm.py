"""The XML half of the API as the client sees it: documents it sends, and what it reads back."""

from __future__ import annotations

import base64
from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from defusedxml import ElementTree

NAMESPACE = "http://schemas.microsoft.com/windowsazure"


def cloud_service_xml(name: str, region: str) -> str:
    """The body that creates a cloud service."""
    return (f'<CloudService xmlns="{NAMESPACE}"><Label>{escape(name)}</Label>'
            f"<Description>made by the scheduler command-line client</Description>"
            f"<GeoRegion>{escape(region)}</GeoRegion></CloudService>")


def collection_xml(plan: str) -> str:
    """The body that creates a job collection on a plan."""
    return (f'<Resource xmlns="{NAMESPACE}"><IntrinsicSettings><Plan>{escape(plan)}</Plan>'
            "</IntrinsicSettings></Resource>")


def collection_in_state(document: str, state: str) -> str:
    """The body that puts a job collection read from the service (its `<Resource>`) in
    `state`, `Started` or `Suspended`: a PUT is the whole collection, so its plan, label,
    the limits it shows and its ETag (a change made meanwhile is refused) go with it."""
    resource = parse(document)
    settings = child(resource, "IntrinsicSettings")
    quota = child(settings, "Quota")
    recurrence = child(quota, "MaxRecurrence")
    limits = "" if quota is None else "".join([
        "<Quota>", _leaves(quota, "MaxJobCount", "MaxJobOccurrence"),
        "" if recurrence is None else
        f"<MaxRecurrence>{_leaves(recurrence, 'Frequency', 'Interval')}</MaxRecurrence>",
        "</Quota>"])
    return (f'<Resource xmlns="{NAMESPACE}">{_leaves(resource, "ETag", "Label")}'
            f"<IntrinsicSettings>{_leaves(settings, 'Plan')}{limits}</IntrinsicSettings>"
            f"<State>{escape(state)}</State></Resource>")


def _leaves(element: Element | None, *names: str) -> str:
    """The text elements of these names that `element` holds, written again."""
    found = ((name, text(element, name)) for name in names)
    return "".join(f"<{name}>{escape(value)}</{name}>" for name, value in found
                   if value is not None)


def parse(text: str) -> Element:
    """An XML document from the service, refusing entities and the like."""
    root: Element = ElementTree.fromstring(text)
    return root


def _local(tag: str) -> str:
    """A tag without its namespace, in lower case: the service's names match either way."""
    return tag.rsplit("}", 1)[-1].lower()


def child(element: Element | None, *names: str) -> Element | None:
    """The first descendant along a path of tag names, if there is one."""
    for name in names:
        if element is None:
            return None
        element = next((c for c in element if _local(c.tag) == name.lower()), None)
    return element


def children(element: Element | None, name: str) -> list[Element]:
    """The children with one tag name."""
    return [] if element is None else [c for c in element if _local(c.tag) == name.lower()]


def text(element: Element | None, *names: str) -> str | None:
    """The text at a path of tag names, if there is an element there."""
    found = child(element, *names)
    return None if found is None else (found.text or "")


def error_of(document: str) -> tuple[str, str] | None:
    """The code and message of an `<Error>` document, if it is one."""
    try:
        root = parse(document)
    except ElementTree.ParseError:
        return None
    if _local(root.tag) != "error":
        return None
    return text(root, "Code") or "", text(root, "Message") or ""


def operation_of(document: str) -> dict[str, Any]:
    """An `<Operation>` as `{"status", "httpStatusCode", "code", "message"}`."""
    root = parse(document)
    status = text(root, "HttpStatusCode")
    return {
        "status": text(root, "Status") or "",
        "httpStatusCode": int(status) if status and status.isdigit() else None,
        "code": text(root, "Error", "Code"),
        "message": text(root, "Error", "Message"),
    }


def collection_of(resource: Element, cloud_service: str) -> dict[str, Any]:
    """A job collection `<Resource>` as the JSON object the client prints."""
    quota = child(resource, "IntrinsicSettings", "Quota")
    max_jobs = text(quota, "MaxJobCount")
    interval = text(quota, "MaxRecurrence", "Interval")
    return {
        "cloudService": cloud_service,
        "name": text(resource, "Name"),
        "plan": text(resource, "IntrinsicSettings", "Plan"),
        "state": text(resource, "State"),
        "region": text(resource, "CloudServiceSettings", "GeoRegion"),
        "maxJobCount": int(max_jobs) if max_jobs and max_jobs.isdigit() else None,
        "maxRecurrence": {
            "frequency": text(quota, "MaxRecurrence", "Frequency"),
            "interval": int(interval) if interval and interval.isdigit() else None,
        },
        "operation": text(resource, "OperationStatus", "Result"),
        "etag": text(resource, "ETag"),
    }


def collections_of(document: str) -> list[dict[str, Any]]:
    """The job collections of a `<CloudService>` or of every one in `<CloudServices>`."""
    root = parse(document)
    services = [root] if _local(root.tag) == "cloudservice" else children(root, "CloudService")
    found = []
    for service in services:
        name = text(service, "Name") or ""
        for resource in children(child(service, "Resources"), "Resource"):
            if (text(resource, "ResourceProviderNamespace") or "").lower() == "scheduler":
                found.append(collection_of(resource, name))
    return found


def collection_document(document: str, cloud_service: str) -> dict[str, Any]:
    """One `<Resource>` document as the JSON object the client prints."""
    return collection_of(parse(document), cloud_service)


# --- management certificates ---------------------------------------------------------------

def certificate_xml(der: bytes, thumbprint: str, public_key_der: bytes) -> str:
    """The body that registers a certificate: its DER, thumbprint and public key, as ASM's
    `<SubscriptionCertificate>` (the service checks the thumbprint against the DER)."""
    def encoded(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")
    return (f'<SubscriptionCertificate xmlns="{NAMESPACE}">'
            f"<SubscriptionCertificatePublicKey>{encoded(public_key_der)}"
            "</SubscriptionCertificatePublicKey>"
            f"<SubscriptionCertificateThumbprint>{escape(thumbprint)}"
            "</SubscriptionCertificateThumbprint>"
            f"<SubscriptionCertificateData>{encoded(der)}</SubscriptionCertificateData>"
            "</SubscriptionCertificate>")


def certificate_of(element: Element) -> dict[str, Any]:
    """A `<SubscriptionCertificate>` as `{"thumbprint", "created", "data"}`, the data being
    the certificate's DER in base64."""
    return {
        "thumbprint": text(element, "SubscriptionCertificateThumbprint"),
        "created": text(element, "Created"),
        "data": "".join((text(element, "SubscriptionCertificateData") or "").split()),
    }


def certificates_of(document: str) -> list[dict[str, Any]]:
    """The certificates of a `<SubscriptionCertificates>` listing."""
    return [certificate_of(element)
            for element in children(parse(document), "SubscriptionCertificate")]


def certificate_document(document: str) -> dict[str, Any]:
    """One `<SubscriptionCertificate>` document."""
    return certificate_of(parse(document))
