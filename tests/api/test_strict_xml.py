"""ASM XML request documents are strict: an element a document does not define, one given
twice, or one outside Azure's namespace is a 400 naming it, and nothing is made or changed."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from defusedxml import ElementTree
from werkzeug.test import TestResponse

from scheduler.clock import FrozenClock
from scheduler.errors import AZURE_NAMESPACE, XSI_NAMESPACE
from scheduler.security import pki
from tests.support import Tenant

NS = f'xmlns="{AZURE_NAMESPACE}"'
OTHER = "urn:example:other"
COLLECTIONS = "/cloudservices/cs1/resources/scheduler/jobcollections"


@dataclass(frozen=True)
class Document:
    """A valid request document and the places its variants change."""

    name: str
    body: str
    leaf: str  # an element the document defines, at its top level
    misspelt: tuple[str, str]  # an element, and a misspelling of it
    container: str  # an element inside which an unknown one is nested


def certificate_document(issued: pki.IssuedCertificate) -> str:
    """The body that registers a management certificate."""
    data = base64.b64encode(pki.der_bytes(issued.certificate)).decode()
    return (f"<SubscriptionCertificate {NS}><SubscriptionCertificateThumbprint>"
            f"{issued.thumbprint}</SubscriptionCertificateThumbprint>"
            f"<SubscriptionCertificateData>{data}</SubscriptionCertificateData>"
            "</SubscriptionCertificate>")


CLOUD_SERVICE = Document(
    "CloudService",
    f"<CloudService {NS}><Label>cs</Label><Description>test</Description>"
    "<GeoRegion>West Europe</GeoRegion></CloudService>",
    "Label", ("Description", "Descripton"), "Label")
COLLECTION = Document(
    "Resource",
    f"<Resource {NS}><IntrinsicSettings><Plan>Free</Plan><Quota><MaxJobCount>2</MaxJobCount>"
    "</Quota></IntrinsicSettings><Label>bGFiZWw=</Label><State>Suspended</State></Resource>",
    "State", ("IntrinsicSettings", "IntrinsicSetings"), "Quota")
CERTIFICATE = "SubscriptionCertificate"


# Each variant of a document: its body, the element its error names (the end of the path
# the message gives), and what the message says of it.
Variant = Callable[[Document], tuple[str, str, str]]
UNDEFINED, TWICE, OUTSIDE = "is not part of", "more than once", "must be in the namespace"


def misspelt(document: Document) -> tuple[str, str, str]:
    right, wrong = document.misspelt
    body = document.body.replace(f"<{right}>", f"<{wrong}>").replace(f"</{right}>",
                                                                    f"</{wrong}>")
    return body, wrong, UNDEFINED


def repeated(document: Document) -> tuple[str, str, str]:
    leaf = document.leaf
    start = document.body.index(f"<{leaf}>")
    end = document.body.index(f"</{leaf}>") + len(f"</{leaf}>")
    element = document.body[start:end]
    return document.body.replace(element, element + element), leaf, TWICE


def without_namespace(document: Document) -> tuple[str, str, str]:
    return document.body.replace(f" {NS}", ""), document.name, OUTSIDE


def in_a_foreign_namespace(document: Document) -> tuple[str, str, str]:
    return document.body.replace(AZURE_NAMESPACE, OTHER), document.name, OUTSIDE


def with_a_foreign_child(document: Document) -> tuple[str, str, str]:
    leaf = document.leaf
    body = document.body.replace(f"<{leaf}>", f'<o:{leaf} xmlns:o="{OTHER}">') \
        .replace(f"</{leaf}>", f"</o:{leaf}>")
    return body, leaf, OUTSIDE


def with_a_nested_unknown(document: Document) -> tuple[str, str, str]:
    container = document.container
    body = document.body.replace(f"</{container}>", f"<Extra>1</Extra></{container}>")
    return body, f"{container}/Extra", UNDEFINED


VARIANTS: list[Variant] = [misspelt, repeated, without_namespace, in_a_foreign_namespace,
                           with_a_foreign_child, with_a_nested_unknown]


def refused(response: TestResponse, element: str, saying: str) -> None:
    """A 400 InvalidXmlRequest whose message names the element and says what is wrong."""
    assert response.status_code == 400, response.data
    error = ElementTree.fromstring(response.data)
    code, message = (error.findtext(f"{{{AZURE_NAMESPACE}}}{name}") or ""
                     for name in ("Code", "Message"))
    assert code == "InvalidXmlRequest", message
    named = re.search(r"The element <([^>]+)>", message)
    assert named and re.search(rf"(^|/){element}$", named.group(1)), message
    assert saying in message, message


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.__name__)
def test_a_cloud_service_document_out_of_its_definition_makes_nothing(
    collection: Tenant, variant: Variant
) -> None:
    body, element, saying = variant(CLOUD_SERVICE)
    refused(collection.call("PUT", "/cloudservices/cs2", body), element, saying)
    assert collection.call("GET", "/cloudservices/cs2").status_code == 404
    assert "<Name>cs2</Name>" not in collection.call("GET", "/cloudservices").get_data(
        as_text=True)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.__name__)
def test_a_collection_document_out_of_its_definition_makes_nothing(
    collection: Tenant, variant: Variant
) -> None:
    body, element, saying = variant(COLLECTION)
    refused(collection.call("PUT", f"{COLLECTIONS}/jc2", body), element, saying)
    assert collection.call("GET", f"{COLLECTIONS}/jc2").status_code == 404


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.__name__)
def test_a_collection_document_out_of_its_definition_changes_nothing(
    collection: Tenant, variant: Variant
) -> None:
    before = collection.call("GET", f"{COLLECTIONS}/jc1")
    body, element, saying = variant(COLLECTION)
    refused(collection.call("PUT", f"{COLLECTIONS}/jc1", body), element, saying)
    after = collection.call("GET", f"{COLLECTIONS}/jc1")
    assert after.headers["ETag"] == before.headers["ETag"]
    text = after.get_data(as_text=True)
    assert "<Plan>Standard</Plan>" in text and "<State>Started</State>" in text


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.__name__)
def test_a_certificate_document_out_of_its_definition_registers_nothing(
    tenant: Tenant, clock: FrozenClock, variant: Variant
) -> None:
    issued = pki.issue_client_certificate(None, "another", clock.now())
    document = Document(CERTIFICATE, certificate_document(issued),
                        "SubscriptionCertificateThumbprint",
                        ("SubscriptionCertificateData", "SubscriptionCertificateDate"),
                        "SubscriptionCertificateThumbprint")
    body, element, saying = variant(document)
    refused(tenant.call("POST", "/certificates", body), element, saying)
    assert tenant.call("GET", f"/certificates/{issued.thumbprint}").status_code == 404
    assert tenant.call("POST", "/certificates", document.body).status_code == 201


def test_an_attribute_other_than_xml_schema_instance_ones_is_refused(
    collection: Tenant
) -> None:
    body = COLLECTION.body.replace("<State>", '<State kind="x">')
    refused(collection.call("PUT", f"{COLLECTIONS}/jc2", body), "State", "attribute")
    assert collection.call("GET", f"{COLLECTIONS}/jc2").status_code == 404


def test_what_azure_clients_send_is_accepted_names_in_any_case_and_nil_elements(
    collection: Tenant
) -> None:
    # As the legacy client writes them: the XSI namespace declared, <plan> in lower case.
    made = collection.call("PUT", f"{COLLECTIONS}/jc2", (
        f'<Resource xmlns:i="{XSI_NAMESPACE}" {NS}><IntrinsicSettings><plan>Free</plan>'
        '</IntrinsicSettings><label i:nil="true"/><SCHEMAVERSION>1.1</SCHEMAVERSION>'
        "</Resource>"))
    assert made.status_code == 202, made.data
    text = collection.call("GET", f"{COLLECTIONS}/jc2").get_data(as_text=True)
    assert "<Plan>Free</Plan>" in text
    service = collection.call("PUT", "/cloudservices/cs2", (
        f'<CloudService xmlns:i="{XSI_NAMESPACE}" {NS}><Label>MyApp3</Label>'
        "<Description>My Cloud Service</Description><GeoRegion>South Central US</GeoRegion>"
        "<Email>ops@example.com</Email></CloudService>"))
    assert service.status_code == 202, service.data
