"""Rendered pages read as a tree of elements, so that tests find what a page shows by its ids,
classes and table cells rather than by where a string falls in the HTML."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

from flask.testing import FlaskClient

HTTPS = "https://localhost"
# Elements that never hold others, so never closed.
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                  "source", "track", "wbr"})


@dataclass
class Element:
    """One element of a page: its tag, attributes, children, and the text directly in it."""

    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Its classes."""
        return self.attrs.get("class", "").split()

    @property
    def text(self) -> str:
        """All the text inside it, its runs of white space made one space."""
        return " ".join("".join(self.texts()).split())

    def texts(self) -> Iterator[str]:
        """Its runs of text and those of the elements inside it, in document order."""
        for child in self.children:
            if isinstance(child, str):
                yield child
            else:
                yield from child.texts()

    def elements(self) -> Iterator[Element]:
        """Every element inside it, in document order."""
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.elements()

    def find_all(self, tag: str | None = None, *, class_: str | None = None,
                 where: Callable[[Element], bool] | None = None, **attrs: str
                 ) -> list[Element]:
        """The elements inside it of `tag`, with class `class_`, the attributes `attrs`
        (`data_job` stands for `data-job`) and for which `where` holds."""
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        return [element for element in self.elements()
                if (tag is None or element.tag == tag)
                and (class_ is None or class_ in element.classes)
                and all(element.attrs.get(name) == value for name, value in wanted.items())
                and (where is None or where(element))]

    def one(self, tag: str | None = None, *, class_: str | None = None,
            where: Callable[[Element], bool] | None = None, **attrs: str) -> Element:
        """The one element inside it that `find_all` finds; fails unless there is exactly
        one."""
        found = self.find_all(tag, class_=class_, where=where, **attrs)
        assert len(found) == 1, (tag, class_, attrs, [element.text for element in found])
        return found[0]

    def section(self, heading_id: str) -> Element:
        """The section labelled by the heading of id `heading_id`."""
        return self.one("section", aria_labelledby=heading_id)

    def rows(self) -> list[list[str]]:
        """The text of each cell of each row in its table bodies (or in it, if a row)."""
        rows = [self] if self.tag == "tr" else [
            row for body in self.find_all("tbody") for row in body.find_all("tr")]
        return [[cell.text for cell in row.children
                 if isinstance(cell, Element) and cell.tag in ("td", "th")] for row in rows]


class _TreeBuilder(HTMLParser):
    """Builds the tree of elements of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("document", {})
        self.open: list[Element] = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.open[-1].children.append(element)
        if tag not in VOID:
            self.open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.open[-1].children.append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        # Close up to the innermost open element of this tag; a stray end tag closes none.
        for depth in range(len(self.open) - 1, 0, -1):
            if self.open[depth].tag == tag:
                del self.open[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.open[-1].children.append(data)


def parse(html: str) -> Element:
    """A page's tree of elements."""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def page(client: FlaskClient, path: str) -> Element:
    """A page, which must be there, as a tree of elements."""
    response = client.get(path, base_url=HTTPS)
    assert response.status_code == 200, (path, response.status_code)
    return parse(response.get_data(as_text=True))


def ui(subscription_id: str, path: str = "/") -> str:
    """A dashboard path under a subscription."""
    return f"/ui/{subscription_id}{path}"


def collection_ui(subscription_id: str, path: str = "", collection: str = "jc1") -> str:
    """A dashboard path under the subscription's collection cs1/`collection`."""
    return ui(subscription_id,
              f"/cloudservices/cs1/resources/scheduler/~/jobcollections/{collection}{path}")


def sign_in(client: FlaskClient, subscription_id: str) -> FlaskClient:
    """Open a new session in the browser `client`, as the certificate it presents (a
    session ends after 8 hours idle: a test whose clock moves days signs in again)."""
    page = client.get("/ui/sign-in", base_url=HTTPS).get_data(as_text=True)
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    response = client.post("/ui/sign-in/certificate", base_url=HTTPS,
                           data={"subscription": subscription_id, "csrf": token})
    assert response.status_code == 303, response.data
    return client
