"""A small, safe XML reader for ISO 20022 messages: expat with line numbers,
no DTDs, no entities (a document type declaration is refused outright, so
no entity expansion can ever happen), size-bounded by the caller."""

from __future__ import annotations

import xml.parsers.expat
from typing import Final

from clearing.bankfiles._errors import FileError, FileErrorCode

__all__ = ["MAX_XML_DEPTH", "Node", "parse_xml"]

MAX_XML_DEPTH: Final = 32


class Node:
    """An element: local name, namespace, attributes, text, children, line."""

    __slots__ = ("attrs", "children", "line", "name", "namespace", "path", "text_parts")

    def __init__(self, name: str, namespace: str, attrs: dict[str, str], line: int, path: str) -> None:
        self.name = name
        self.namespace = namespace
        self.attrs = attrs
        self.line = line
        self.path = path
        self.children: list[Node] = []
        self.text_parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.text_parts).strip()

    def all(self, name: str) -> list[Node]:
        return [c for c in self.children if c.name == name]

    def get(self, *names: str) -> Node | None:
        """The first descendant along `names`, or None."""
        node: Node | None = self
        for name in names:
            assert node is not None
            node = next((c for c in node.children if c.name == name), None)
            if node is None:
                return None
        return node

    def need(self, *names: str) -> Node:
        """The descendant along `names`; FileError MISSING_ELEMENT if absent."""
        node = self
        for name in names:
            child = next((c for c in node.children if c.name == name), None)
            if child is None:
                raise FileError(
                    FileErrorCode.MISSING_ELEMENT, f"{name} in {node.path}", node.line, f"{node.path}/{name}"
                )
            node = child
        return node

    def need_text(self, *names: str) -> str:
        node = self.need(*names)
        if not node.text:
            raise FileError(FileErrorCode.MISSING_ELEMENT, f"{node.path} is empty", node.line, node.path)
        return node.text


def parse_xml(data: bytes) -> Node:
    """The document's root element; FileError BAD_XML / FORBIDDEN_XML with the line."""
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Node] = []
    root: list[Node] = []

    def forbid(*_args: object) -> None:
        raise FileError(FileErrorCode.FORBIDDEN_XML, "DOCTYPE or ENTITY", parser.CurrentLineNumber)

    def start(tag: str, attrs: dict[str, str]) -> None:
        namespace, _, name = tag.rpartition(" ")
        if len(stack) >= MAX_XML_DEPTH:
            raise FileError(FileErrorCode.BAD_XML, f"nested deeper than {MAX_XML_DEPTH}", parser.CurrentLineNumber)
        path = f"{stack[-1].path}/{name}" if stack else name
        node = Node(
            name, namespace, {k.rpartition(" ")[2]: v for k, v in attrs.items()}, parser.CurrentLineNumber, path
        )
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(text: str) -> None:
        if stack:
            stack[-1].text_parts.append(text)

    parser.StartDoctypeDeclHandler = forbid
    parser.EntityDeclHandler = forbid
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise FileError(FileErrorCode.BAD_XML, xml.parsers.expat.ErrorString(exc.code), exc.lineno) from None
    except LookupError as exc:  # an encoding the declaration names and Python does not know
        raise FileError(FileErrorCode.BAD_XML, f"unknown encoding: {exc}", parser.CurrentLineNumber or 1) from None
    assert root, "expat accepted a document without a root element"
    return root[0]
