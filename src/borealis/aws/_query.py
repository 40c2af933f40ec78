"""The AWS query protocol: form-encoded input (`Action=...&Tags.Tag.1.Key=...`) and XML output.

Rules, all taken from the model's serialization traits the way botocore's QuerySerializer and
QueryParser apply them:

- a structure member is `Prefix.Name` where Name is the member's locationName, else its member name;
- a list is `Name.Item.N` (Item = the list member's locationName, else "member"), or `Name.N` when
  flattened; an empty list is sent as `Name=`;
- a map is `Name.entry.N.key` / `Name.entry.N.value` (no "entry" when flattened);
- scalars are text: booleans "true"/"false", timestamps ISO 8601, blobs base64.

Output mirrors this in XML inside `<OpResponse xmlns=...><OpResult>`; element names come from the same
traits. Walkers are compiled once per shape so a request does no model lookups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from botocore.model import Shape

from ._errors import InputError
from ._values import (
    b64decode,
    b64encode,
    format_timestamp,
    parse_bool_text,
    parse_float_text,
    parse_int_text,
    parse_timestamp,
)

__all__ = ["QueryCodec", "build_tree", "parse_form", "xml_error"]

Node = Any  # a str leaf or a dict of child nodes
Reader = Callable[[Node], Any]
Writer = Callable[[Any, str, list[str]], None]


def parse_form(body: bytes, query_string: bytes) -> dict[str, str]:
    """The request's parameters: URL query string and form body together (the body wins)."""
    try:
        pairs = parse_qsl(query_string.decode("utf-8"), keep_blank_values=True)
        pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError("the request body is not a valid form", malformed=True) from exc
    return dict(pairs)


def build_tree(params: dict[str, str]) -> dict[str, Node]:
    """Nest flat keys (`Tags.Tag.1.Key`) into dicts so shapes can be walked from the top down."""
    tree: dict[str, Node] = {}
    for key, value in params.items():
        parts = key.split(".")
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                # `A=x` and `A.B=y` together; treat the bare `A=` as the empty-list marker it usually is.
                child = node[part] = {}
            node = child
        last = parts[-1]
        if isinstance(node.get(last), dict):
            continue  # keep the nested form when both appear
        node[last] = value
    return tree


def _member_name(name: str, shape: Shape) -> str:
    return str(shape.serialization.get("name", name))


class QueryCodec:
    """Compiled readers (form tree -> typed input) and writers (output -> XML) for one service."""

    def __init__(self, xml_namespace: str) -> None:
        """`xml_namespace` is the model's `xmlNamespace`, written on every response's root element."""
        self.xmlns = xml_namespace
        self._readers: dict[str, Reader] = {}
        self._writers: dict[str, Writer] = {}

    # ---------------------------------------------------------------- input

    def reader(self, shape: Shape) -> Reader:
        """A function from a form tree node to the typed value for `shape` (memoised, recursion-safe)."""
        key = shape.name
        found = self._readers.get(key)
        if found is not None:
            return found
        # A forward cell breaks recursion: recursive shapes call through it once compiled.
        cell: list[Reader] = []
        self._readers[key] = lambda node: cell[0](node)
        compiled = self._compile_reader(shape)
        cell.append(compiled)
        self._readers[key] = compiled
        return compiled

    def _compile_reader(self, shape: Shape) -> Reader:
        kind = shape.type_name
        if kind == "structure":
            return self._struct_reader(shape)
        if kind == "list":
            return self._list_reader(shape)
        if kind == "map":
            return self._map_reader(shape)
        scalar = _SCALAR_READERS.get(kind, _read_string)

        def read_scalar(node: Node) -> Any:
            if not isinstance(node, str):
                raise InputError("expected a single value")
            return scalar(node)

        return read_scalar

    def _struct_reader(self, shape: Shape) -> Reader:
        members = [(name, _member_name(name, member), self.reader(member)) for name, member in shape.members.items()]
        required = [(name, _member_name(name, shape.members[name])) for name in shape.required_members]

        def read_struct(node: Node) -> dict[str, Any]:
            if not isinstance(node, dict):
                if node == "":
                    node = {}
                else:
                    raise InputError("expected a structure")
            out: dict[str, Any] = {}
            for name, wire, read in members:
                if wire in node:
                    try:
                        out[name] = read(node[wire])
                    except InputError as exc:
                        exc.path.insert(0, wire)
                        raise
            for name, wire in required:
                if name not in out:
                    error = InputError(f"missing required member {wire}", missing=True)
                    error.path.append(wire)
                    raise error
            return out

        return read_struct

    def _list_reader(self, shape: Shape) -> Reader:
        read_item = self.reader(shape.member)
        flattened = bool(shape.serialization.get("flattened"))
        item_name = str(shape.member.serialization.get("name", "member"))

        def read_list(node: Node) -> list[Any]:
            if node == "":
                return []
            if not isinstance(node, dict):
                raise InputError("expected a list")
            items = node if flattened else node.get(item_name, {})
            if not isinstance(items, dict):
                raise InputError("expected a list")
            out = []
            for index, value in _numbered(items):
                try:
                    out.append(read_item(value))
                except InputError as exc:
                    exc.path.insert(0, str(index))
                    raise
            return out

        return read_list

    def _map_reader(self, shape: Shape) -> Reader:
        read_key = self.reader(shape.key)
        read_value = self.reader(shape.value)
        flattened = bool(shape.serialization.get("flattened"))
        key_name = str(shape.key.serialization.get("name", "key"))
        value_name = str(shape.value.serialization.get("name", "value"))

        def read_map(node: Node) -> dict[Any, Any]:
            if node == "":
                return {}
            if not isinstance(node, dict):
                raise InputError("expected a map")
            entries = node if flattened else node.get("entry", {})
            if not isinstance(entries, dict):
                raise InputError("expected a map")
            out: dict[Any, Any] = {}
            for _, entry in _numbered(entries):
                if not isinstance(entry, dict) or key_name not in entry:
                    raise InputError("map entry without a key")
                out[read_key(entry[key_name])] = read_value(entry.get(value_name, ""))
            return out

        return read_map

    # --------------------------------------------------------------- output

    def writer(self, shape: Shape) -> Writer:
        """A function appending `<name>value</name>` XML for `shape` to a list of parts (memoised)."""
        key = shape.name
        found = self._writers.get(key)
        if found is not None:
            return found
        cell: list[Writer] = []
        self._writers[key] = lambda value, name, out: cell[0](value, name, out)
        compiled = self._compile_writer(shape)
        cell.append(compiled)
        self._writers[key] = compiled
        return compiled

    def _compile_writer(self, shape: Shape) -> Writer:
        kind = shape.type_name
        if kind == "structure":
            members = {
                name: (_member_name(name, member), self.writer(member)) for name, member in shape.members.items()
            }

            def write_struct(value: Any, name: str, out: list[str]) -> None:
                out.append(f"<{name}>")
                _write_members(members, value, out)
                out.append(f"</{name}>")

            return write_struct
        if kind == "list":
            write_item = self.writer(shape.member)
            if shape.serialization.get("flattened"):
                item_override = shape.member.serialization.get("name")

                def write_flat(value: Any, name: str, out: list[str]) -> None:
                    for item in value:
                        write_item(item, item_override or name, out)

                return write_flat
            item_name = str(shape.member.serialization.get("name", "member"))

            def write_list(value: Any, name: str, out: list[str]) -> None:
                out.append(f"<{name}>")
                for item in value:
                    if item is not None:
                        write_item(item, item_name, out)
                out.append(f"</{name}>")

            return write_list
        if kind == "map":
            write_key = self.writer(shape.key)
            write_value = self.writer(shape.value)
            key_name = str(shape.key.serialization.get("name", "key"))
            value_name = str(shape.value.serialization.get("name", "value"))
            flat = bool(shape.serialization.get("flattened"))

            def write_map(value: Any, name: str, out: list[str]) -> None:
                if not flat:
                    out.append(f"<{name}>")
                for k, v in value.items():
                    out.append(f"<{name}>" if flat else "<entry>")
                    write_key(k, key_name, out)
                    if v is not None:
                        write_value(v, value_name, out)
                    out.append(f"</{name}>" if flat else "</entry>")
                if not flat:
                    out.append(f"</{name}>")

            return write_map
        render = _scalar_renderer(shape)

        def write_scalar(value: Any, name: str, out: list[str]) -> None:
            out.append(f"<{name}>{render(value)}</{name}>")

        return write_scalar

    def response(self, operation: str, output: Shape | None, value: dict[str, Any], request_id: str) -> bytes:
        """The whole `<OpResponse>` document for an operation's output dict."""
        out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<{operation}Response xmlns="{self.xmlns}">']
        if output is not None:
            wrapper = output.serialization.get("resultWrapper")
            write = self.writer(output)
            if wrapper:
                write(value, str(wrapper), out)
            else:
                # Without a wrapper the members sit directly under the response element.
                inner: list[str] = []
                write(value, "_", inner)
                out.extend(inner[1:-1])
        out.append(f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>")
        out.append(f"</{operation}Response>")
        return "".join(out).encode()


def xml_error(xmlns: str, code: str, message: str, sender: bool, request_id: str) -> bytes:
    """An `<ErrorResponse>` as query services send it (also used before a service is known)."""
    side = "Sender" if sender else "Receiver"
    attr = f' xmlns="{xmlns}"' if xmlns else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse{attr}><Error><Type>{side}</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()


def _write_members(members: dict[str, tuple[str, Writer]], value: Any, out: list[str]) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"expected a dict for a structure, got {type(value).__name__}")
    for key, item in value.items():
        if item is None:
            continue
        spec = members.get(key)
        if spec is None:
            continue  # not in the model: clients would ignore it anyway
        wire, write = spec
        write(item, wire, out)


def _numbered(items: dict[str, Node]) -> list[tuple[int, Node]]:
    """List entries ordered by their 1-based index; anything but a positive integer is refused."""
    numbered: list[tuple[int, Node]] = []
    for index, value in items.items():
        if not index.isdigit() or int(index) < 1:
            raise InputError(f"invalid list index {index!r}")
        numbered.append((int(index), value))
    numbered.sort(key=lambda pair: pair[0])
    return numbered


def _read_string(text: str) -> str:
    return text


def _read_blob(text: str) -> bytes:
    return b64decode(text)


_SCALAR_READERS: dict[str, Callable[[str], Any]] = {
    "string": _read_string,
    "character": _read_string,
    "integer": parse_int_text,
    "long": parse_int_text,
    "short": parse_int_text,
    "byte": parse_int_text,
    "float": parse_float_text,
    "double": parse_float_text,
    "boolean": parse_bool_text,
    "timestamp": parse_timestamp,
    "blob": _read_blob,
}


def _scalar_renderer(shape: Shape) -> Callable[[Any], str]:
    kind = shape.type_name
    if kind == "boolean":
        return lambda value: "true" if value else "false"
    if kind == "timestamp":
        fmt = str(shape.serialization.get("timestampFormat", "iso8601"))
        return lambda value: escape(str(format_timestamp(value, fmt)))
    if kind == "blob":
        return b64encode
    if kind in ("float", "double"):
        return lambda value: repr(float(value))
    if kind in ("integer", "long", "short", "byte"):
        return lambda value: str(int(value))
    return lambda value: escape(str(value))
