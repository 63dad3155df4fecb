"""Reading channels.yaml: YAML nodes, line numbers, and `${ENV}` interpolation.

The file is composed to nodes first (every node knows its line), string
scalars are interpolated in place, and only then constructed into plain
Python data. Interpolated values are `str` subclasses that remember where
they came from, so the secret fields can refuse values written literally.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from router.errors import ConfigProblem

STR_TAG = "tag:yaml.org,2002:str"

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


class FromFile(str):
    """A secret read from a `*_file` path."""


def from_environment(value: object) -> bool:
    """True when a value came from the environment or a file, not from a literal."""
    if isinstance(value, Interpolated):
        return value.env_only
    return isinstance(value, Unresolved | FromFile)


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


def read_source(text: str, *, file: str, env: Mapping[str, str]) -> Source:
    """Parse YAML text into a `Source`; never raises for problems in the text."""
    src = Source(file=file)
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            # Only the description: the snippet YAML prints could show a secret.
            what = " ".join(p for p in (exc.context, exc.problem) if p)
            src.problems.append(ConfigProblem(file, line, "", f"YAML syntax error: {what}"))
            src.fatal = True
            return src
        except yaml.YAMLError as exc:
            src.problems.append(ConfigProblem(file, None, "", f"YAML error: {exc}"))
            src.fatal = True
            return src
        if node is None:
            src.problems.append(ConfigProblem(file, None, "", "the file is empty"))
            src.fatal = True
            return src
        if not isinstance(node, MappingNode):
            src.problems.append(
                ConfigProblem(
                    file,
                    node.start_mark.line + 1,
                    "",
                    "the top level must be a mapping of sections",
                )
            )
            src.fatal = True
            return src
        missing: list[_Missing] = []
        _Walker(loader, src, env, missing).walk(node, "", frozenset())
        src.data = loader.construct_document(node)
    finally:
        loader.dispose()
    for m in missing:
        if not _inside_disabled_channel(src.data, m.path):
            src.problems.append(
                ConfigProblem(
                    file,
                    m.line,
                    m.path,
                    f"environment variable {m.name} is not set"
                    f" (set it, or write ${{{m.name}:-default}})",
                )
            )
    return src


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

    def walk(self, node: Node, path: str, ancestors: frozenset[int]) -> None:
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
                key = str(key_node.value)
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

    def _scalar(self, node: ScalarNode, path: str) -> None:
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


def _inside_disabled_channel(data: Any, path: str) -> bool:
    """Unset variables inside a disabled channel's `<type>:` block are not errors."""
    m = re.match(r"channels\[(\d+)\]\.([^.\[]+)", path)
    if m is None:
        return False
    try:
        channel = data["channels"][int(m.group(1))]
        return bool(
            channel.get("type") == m.group(2)
            and _BOOL.validate_python(channel.get("enabled", True)) is False
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValidationError):
        return False
