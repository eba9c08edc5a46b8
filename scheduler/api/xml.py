"""ASM XML in and out: safe parsing, case-insensitive element names, Azure's documents."""

from __future__ import annotations

import base64
import binascii
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from scheduler.errors import AZURE_NAMESPACE, XSI_NAMESPACE, InvalidXmlRequest

XML_CONTENT_TYPE = "application/xml; charset=utf-8"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def parse_xml(body: bytes, root: str) -> Element:
    """Parse a request body whose root element must be `root` (any case, any namespace)."""
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
    return element


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
