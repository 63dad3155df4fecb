"""Reading channels.yaml: YAML nodes, line numbers, and `${ENV}` interpolation.

The file is composed to nodes first (every node knows its line), string
scalars are interpolated in place, and only then constructed into plain
Python data. Interpolated values are `str` subclasses that remember where
they came from, so the secret fields can refuse values written literally.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from router.errors import ConfigProblem

STR_TAG = "tag:yaml.org,2002:str"

# Bounds that keep a hostile or broken file cheap to refuse: a config is a few
# levels deep and a few thousand values; aliases could otherwise expand it
# exponentially (each level of `[*a, *a, ...]` multiplies it).
MAX_DEPTH = 64
MAX_VALUES = 100_000
_SURROGATE = re.compile(r"[\ud800-\udfff]")

# `${NAME}`, `${NAME:-default}`; `$${` is a literal `${`.
_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)(\}?)")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


class Interpolated(str):
    """A string that had `${...}` references in the file; `raw` is the text as written."""

    raw: str
    env_only: bool  # the whole value was one `${NAME}` (no literal default)

    def __new__(cls, value: str, *, raw: str, env_only: bool) -> Interpolated:
        self = super().__new__(cls, value)
        self.raw = raw
        self.env_only = env_only
        return self

    def __getnewargs_ex__(self) -> tuple[tuple[str], dict[str, Any]]:
        # Pickle (a config sent to a child process) would call `__new__` with the
        # value alone; the keyword-only arguments must travel with it.
        return (str(self),), {"raw": self.raw, "env_only": self.env_only}


class Unresolved(str):
    """A `${NAME}` whose variable is not set and has no default.

    The value is the raw text. It is an error everywhere except inside a
    disabled channel, where validation problems it causes are ignored.
    """

    raw: str

    def __new__(cls, raw: str) -> Unresolved:
        self = super().__new__(cls, raw)
        self.raw = raw
        return self


@dataclass(slots=True)
class Source:
    """A parsed config file: its data, where each key path is, and what went wrong."""

    file: str
    data: Any = None
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[ConfigProblem] = field(default_factory=list)
    fatal: bool = False  # no data to validate (syntax error, empty file, not a mapping)

    def line_of(self, path: str) -> int | None:
        """The line of `path`, or of its nearest ancestor written in the file."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = parent_path(path)

    def problem(self, path: str, message: str) -> ConfigProblem:
        return ConfigProblem(self.file, self.line_of(path), path, message)


def join_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def parent_path(path: str) -> str:
    return re.sub(r"(?:\.[^.\[]*|\[\d+\]|^[^.\[]*)$", "", path)


@dataclass(slots=True)
class _Missing:
    path: str
    line: int
    name: str


def read_source(
    text: str,
    *,
    file: str,
    env: Mapping[str, str],
    is_secret: Callable[[str], bool] = lambda _path: False,
    channel_secrets: bool = True,
) -> Source:
    """Parse YAML text into a `Source`; never raises for problems in the text.

    `is_secret(path)` says whether a key holds a secret, which takes no default.
    `channel_secrets=False`: unset variables inside any channel's `<type>:` block (and
    in `supervisor`) are not errors (as in a disabled channel), for commands that never
    start a channel."""
    src = Source(file=file)
    missing: list[_Missing] = []
    try:
        # The reader checks every character as it is created: inside the try.
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        return _fatal(src, _reader_problem(text, file, exc))
    try:
        node = loader.get_single_node()
        if node is None:
            return _fatal(src, ConfigProblem(file, None, "", "the file is empty"))
        if not isinstance(node, MappingNode):
            line = node.start_mark.line + 1
            problem = ConfigProblem(file, line, "", "the top level must be a mapping of sections")
            return _fatal(src, problem)
        _Walker(loader, src, env, missing).walk(node, "", frozenset())
        src.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        # Only the description: the snippet YAML prints could show a secret.
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        return _fatal(src, ConfigProblem(file, line, "", f"YAML syntax error: {what}"))
    except yaml.reader.ReaderError as exc:
        return _fatal(src, _reader_problem(text, file, exc))
    except yaml.YAMLError as exc:
        return _fatal(src, ConfigProblem(file, None, "", f"YAML error: {exc}"))
    except _TooMany:
        problem = ConfigProblem(
            file, None, "", f"more than {MAX_VALUES} values once aliases are expanded"
        )
        return _fatal(src, problem)
    finally:
        loader.dispose()
    for m in missing:
        if not channel_secrets and m.path.startswith("supervisor."):
            continue  # the status page's hash: a command that reads the store needs none
        if not _inside_channel_block(src.data, m.path, disabled_only=channel_secrets):
            # A secret written in the file is refused, default included: offer its file.
            key = m.path.rpartition(".")[2]
            hint = (
                f"set it, or give the secret in a file: {key}_file: /path/to/file"
                if is_secret(m.path)
                else f"set it, or write ${{{m.name}:-default}}"
            )
            message = f"environment variable {m.name} is not set ({hint})"
            src.problems.append(ConfigProblem(file, m.line, m.path, message))
    return src


def _fatal(src: Source, problem: ConfigProblem) -> Source:
    src.problems.append(problem)
    src.fatal = True
    src.data = None
    return src


def _reader_problem(text: str, file: str, exc: yaml.reader.ReaderError) -> ConfigProblem:
    """Where the character is (YAML gives only its offset) and which one it is."""
    pos = max(0, min(exc.position, len(text)))
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    char = exc.character
    code = char if isinstance(char, int) else ord(char) if char else 0
    what = f"{describe_character(code)} is not allowed in YAML text (column {column})"
    return ConfigProblem(file, line, "", what)


def describe_character(code: int) -> str:
    """`control character U+001B (ESC)`: what an editor may not show."""
    name = _CONTROL_NAMES.get(code) or unicodedata.name(chr(code), "")
    kind = "control character" if unicodedata.category(chr(code)) == "Cc" else "character"
    return f"{kind} U+{code:04X}" + (f" ({name})" if name else "")


# Control characters have no Unicode name; these are the abbreviations terminals use.
_CONTROL_NAMES = dict(
    enumerate(
        "NUL SOH STX ETX EOT ENQ ACK BEL BS HT LF VT FF CR SO SI"
        " DLE DC1 DC2 DC3 DC4 NAK SYN ETB CAN EM SUB ESC FS GS RS US".split()
    )
) | {0x7F: "DEL"}


class _TooMany(Exception):
    """The walk met more than `MAX_VALUES` values (aliases expand)."""


class _Loader(yaml.SafeLoader):
    """The safe loader with bounded nesting and located constructor errors."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception:
            # `!!int abc`, `!!bool maybe`, `!!timestamp 2024-13-01`: the library raises
            # plain errors without a place; their text would echo the value.
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise ConstructorError(
                None, None, f"not a valid {tag} value", node.start_mark
            ) from None


class _Walker:
    def __init__(
        self,
        loader: yaml.SafeLoader,
        src: Source,
        env: Mapping[str, str],
        missing: list[_Missing],
    ) -> None:
        self.loader = loader
        self.src = src
        self.env = env
        self.missing = missing
        self.done: set[int] = set()  # scalars already interpolated (aliases share nodes)
        self.visits = 0

    def walk(self, node: Node, path: str, ancestors: frozenset[int]) -> None:
        self.visits += 1
        if self.visits > MAX_VALUES:
            raise _TooMany
        if id(node) in ancestors:
            self.src.problems.append(self.src.problem(path, "recursive alias"))
            return
        inner = ancestors | {id(node)}
        if isinstance(node, ScalarNode):
            self._scalar(node, path)
        elif isinstance(node, MappingNode):
            try:
                self.loader.flatten_mapping(node)  # resolve `<<` merge keys first
            except yaml.MarkedYAMLError as exc:
                self.src.problems.append(self.src.problem(path, f"bad merge key: {exc.problem}"))
                node.value = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if not isinstance(key_node, ScalarNode):
                    self.src.problems.append(
                        ConfigProblem(
                            self.src.file,
                            line,
                            path,
                            "keys must be plain strings",
                        )
                    )
                    continue
                key = self._printable(key_node, path)
                child = join_path(path, key)
                if key in seen:
                    self.src.problems.append(
                        ConfigProblem(
                            self.src.file,
                            line,
                            child,
                            f"duplicate key (first written on line {seen[key]})",
                        )
                    )
                else:
                    seen[key] = line
                    self.src.lines[child] = line
                self.walk(value_node, child, inner)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                child = join_path(path, index)
                self.src.lines[child] = item.start_mark.line + 1
                self.walk(item, child, inner)

    def _printable(self, node: ScalarNode, path: str) -> str:
        """The scalar's text; a lone surrogate (`"\\ud800"`) could be neither printed
        nor logged, so it is an error, and shown escaped from here on."""
        value = str(node.value)
        if _SURROGATE.search(value):
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
            node.value = value
            self.src.problems.append(
                ConfigProblem(
                    self.src.file,
                    node.start_mark.line + 1,
                    path,
                    "an unpaired surrogate escape (\\ud800-\\udfff) is not text",
                )
            )
        return value

    def _scalar(self, node: ScalarNode, path: str) -> None:
        self._printable(node, path)
        if node.tag != STR_TAG or "$" not in node.value or id(node) in self.done:
            return
        self.done.add(id(node))
        raw: str = node.value
        line = node.start_mark.line + 1
        parts: list[str] = []
        pos = 0
        unset: list[str] = []
        refs = 0
        literal_default = False
        for m in _REFERENCE.finditer(raw):
            parts.append(raw[pos : m.start()])
            pos = m.end()
            escaped, body, closed = m.group(1), m.group(2), m.group(3)
            if escaped:
                parts.append("${" + body + closed)
                continue
            ref = _BODY.fullmatch(body)
            if not closed or ref is None:
                self.src.problems.append(
                    ConfigProblem(
                        self.src.file,
                        line,
                        path,
                        "malformed variable reference: write ${NAME} or ${NAME:-default}"
                        " (or $${ for a literal ${)",
                    )
                )
                parts.append(m.group(0))
                continue
            refs += 1
            name, default = ref.group("name"), ref.group("default")
            value = self.env.get(name)
            if default is not None and default != "":
                literal_default = True
            if value is None or (value == "" and default is not None):
                if default is None:
                    unset.append(name)
                    value = m.group(0)
                else:
                    value = default
            parts.append(value)
        parts.append(raw[pos:])
        value = "".join(parts)
        if unset:
            for name in unset:
                self.missing.append(_Missing(path, line, name))
            node.value = Unresolved(raw)
        elif refs:
            whole = _REFERENCE.fullmatch(raw) is not None
            node.value = Interpolated(value, raw=raw, env_only=whole and not literal_default)
        else:
            node.value = value  # only `$${` escapes


_BOOL = TypeAdapter(bool)


def _inside_channel_block(data: Any, path: str, *, disabled_only: bool) -> bool:
    """Unset variables inside a disabled channel's `<type>:` block are not errors
    (nor, with `disabled_only=False`, inside any channel's)."""
    m = re.match(r"channels\[(\d+)\]\.([^.\[]+)", path)
    if m is None:
        return False
    try:
        channel = data["channels"][int(m.group(1))]
        return bool(
            channel.get("type") == m.group(2)
            and (not disabled_only or _BOOL.validate_python(channel.get("enabled", True)) is False)
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValidationError):
        return False
