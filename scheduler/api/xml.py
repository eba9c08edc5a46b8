"""ASM XML in and out: safe parsing, case-insensitive element names, Azure's documents."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from scheduler.errors import AZURE_NAMESPACE, XSI_NAMESPACE, InvalidXmlRequest

# The elements an element may hold, by name as Azure spells them; None for one that holds
# text only.
Elements = Mapping[str, "Elements | None"]


@dataclass(frozen=True)
class Document:
    """An ASM request document: its root element and the element tree below it."""

    root: str
    elements: Elements


_QUOTA: Elements = {
    "MaxJobCount": None, "MaxJobOccurrence": None,
    "MaxRecurrence": {"Frequency": None, "Interval": None},
}
CLOUD_SERVICE = Document("CloudService", {
    "Label": None, "Description": None, "GeoRegion": None, "Email": None,
})
JOB_COLLECTION = Document("Resource", {
    "SchemaVersion": None, "ETag": None, "Label": None, "State": None,
    "IntrinsicSettings": {"Plan": None, "Quota": _QUOTA},
})
SUBSCRIPTION_CERTIFICATE = Document("SubscriptionCertificate", {
    "SubscriptionCertificatePublicKey": None, "SubscriptionCertificateThumbprint": None,
    "SubscriptionCertificateData": None,
})


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _namespace(tag: str) -> str | None:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else None


def parse_xml(body: bytes, document: Document) -> Element:
    """Parse a request body that must be `document`: its root element (any case), and only
    the elements it defines below it, each at most once, all in Azure's namespace."""
    root = document.root
    if not body.strip():
        raise InvalidXmlRequest(f"The request body is empty; expected a <{root}> document.")
    try:
        element: Element = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException:
        raise InvalidXmlRequest(
            "The request body uses DTDs or entities, which are not accepted.") from None
    except (ParseError, ValueError) as exc:
        raise InvalidXmlRequest(f"The request body is not well-formed XML: {exc}.") from None
    if _local(element.tag) != root.lower():
        raise InvalidXmlRequest(f"Expected a <{root}> document, got <{_local(element.tag)}>.")
    check_elements(element, document.elements, root)
    return element


def check_elements(element: Element, allowed: Elements | None, path: str) -> None:
    """Refuse, naming it, an element outside Azure's namespace, an attribute other than
    XML Schema instance ones (`i:nil`), a child element `allowed` does not define, or one
    given twice; then check the children the same way. `path` names `element`."""
    _check_own_namespace(element, path)
    names = {name.lower(): name for name in allowed or {}}
    seen: set[str] = set()
    for node in element:
        local = _local(node.tag)
        where = f"{path}/{node.tag.rsplit('}', 1)[-1]}"
        if local not in names:
            _check_own_namespace(node, where)  # a foreign element is named as such
            raise InvalidXmlRequest(f"The element <{where}> is not part of a "
                                    f"<{path.split('/')[0]}> document.")
        if local in seen:
            raise InvalidXmlRequest(f"The element <{where}> is given more than once.")
        seen.add(local)
        check_elements(node, (allowed or {})[names[local]], where)


def _check_own_namespace(element: Element, path: str) -> None:
    """An element must be in Azure's namespace; its attributes may only be XML Schema
    instance ones, as `i:nil="true"` (namespace declarations are not attributes here)."""
    namespace = _namespace(element.tag)
    if namespace != AZURE_NAMESPACE:
        found = "no namespace" if namespace is None else f"the namespace {namespace}"
        raise InvalidXmlRequest(f"The element <{path}> must be in the namespace "
                                f"{AZURE_NAMESPACE}; it has {found}.")
    for attribute in element.attrib:
        if _namespace(attribute) != XSI_NAMESPACE:
            raise InvalidXmlRequest(f"The element <{path}> has an attribute "
                                    f"{attribute!r} that it does not define.")


def child(element: Element | None, *path: str) -> Element | None:
    """The first descendant along a path of element names, matched case-insensitively."""
    node = element
    for name in path:
        if node is None:
            return None
        node = next((c for c in node if _local(c.tag) == name.lower()), None)
    return node


def text(element: Element | None, *path: str, max_length: int = 1024) -> str | None:
    """The stripped text of a descendant, or None when it is absent."""
    node = child(element, *path)
    if node is None:
        return None
    value = (node.text or "").strip()
    if len(value) > max_length:
        raise InvalidXmlRequest(f"<{path[-1]}> must be at most {max_length} characters.")
    return value


def integer(element: Element | None, *path: str) -> int | None:
    """An integer descendant, or None when it is absent or empty."""
    value = text(element, *path, max_length=12)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidXmlRequest(f"<{path[-1]}> must be an integer, not {value!r}.") from None


def base64_text(value: str, name: str) -> bytes:
    """Decode base64 element content."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidXmlRequest(f"<{name}> must be base64.") from None


def decode_label(value: str | None) -> str:
    """Job collection labels travel as base64; take plain text as it comes."""
    if not value:
        return ""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return value


def encode_label(value: str) -> str:
    """The base64 form of a label."""
    return base64.b64encode(value.encode()).decode()


def element(name: str, *children: str, value: str | None = None, root: bool = False) -> str:
    """One element with escaped text or already-built children; a root declares Azure's
    namespace."""
    start = f'{name} xmlns="{AZURE_NAMESPACE}" xmlns:i="{XSI_NAMESPACE}"' if root else name
    if value is not None:
        return f"<{start}>{escape(value)}</{name}>"
    return f"<{start}>{''.join(children)}</{name}>"


def document(name: str, *children: str) -> str:
    """A root element in Azure's namespace."""
    return element(name, *children, root=True)
