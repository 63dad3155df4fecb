"""Loading channels.yaml: parse, interpolate, validate, and report every problem.

Problems are collected, not raised one at a time: a YAML syntax error stops
at once (there is nothing to validate), otherwise every validation error,
unset variable and bad reference is reported with its file, line and key path.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TextIO, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from router.config.channels import ChannelConfig
from router.config.model import Config
from router.config.reach import unreachable_agents
from router.config.references import names_in_data, reference_problems
from router.config.secrets import is_secret
from router.config.source import Source, Unresolved, join_path, read_source
from router.connector import ConnectorSpec, load_registry
from router.errors import ConfigError, ConfigProblem

Loc = tuple[str | int, ...]

# A large deployment's file is a few hundred KiB; parsing costs about 6 s of CPU
# per MiB (pure-Python YAML, for its line numbers), so this bounds a reload.
MAX_CONFIG_BYTES = 1024 * 1024

# Parts pydantic adds to error locations that are not keys in the file.
_INTERNAL = re.compile(
    r"\[key\]|function-(?:before|after|wrap|plain)\[.*\]|[a-z-]+\[.*\]"
    r"|str|int|float|bool|list|dict|none|nullable|union|chain|constrained-\w+",
)


def load_config(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    *,
    registry: Mapping[str, ConnectorSpec] | None = None,
    channel_secrets: bool = True,
) -> Config:
    """Load and validate a config file; raises `ConfigError` listing every problem.

    `env` defaults to the process environment; `registry` to the installed connectors.
    `channel_secrets=False`, for commands that start no channel (they read the store or
    the bus): the channels' secrets and the status page's password hash are neither
    resolved nor read (`${VAR}`s unset and `*_file`s missing are fine, as in a disabled
    channel; `SecretRef.known` is False).
    The store's and the bus's own secrets are still resolved.
    """
    file = str(path)
    text = read_config_text(Path(path), file)
    return parse_config(
        text, file=file, env=env, registry=registry, channel_secrets=channel_secrets
    )


def read_config_text(path: Path, file: str) -> str:
    """The file's text, bounded in size; every way it cannot be read is a `ConfigError`."""
    try:
        # A FIFO or a device would block or never end: only regular files are read.
        if not stat.S_ISREG(path.stat().st_mode):
            what = "a directory" if path.is_dir() else "not a regular file"
            raise ConfigError([ConfigProblem(file, None, "", f"cannot read: {what}")])
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([ConfigProblem(file, None, "", f"cannot read: {reason}")]) from None
    if len(data) > MAX_CONFIG_BYTES:
        limit = f"the file is larger than {MAX_CONFIG_BYTES // 1024} KiB, the limit for a config"
        raise ConfigError([ConfigProblem(file, None, "", limit)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = data[exc.start]
        problem = f"not UTF-8 text: byte 0x{byte:02X} at column {column} (save it as UTF-8)"
        raise ConfigError([ConfigProblem(file, line, "", problem)]) from None


def parse_config(
    text: str,
    *,
    file: str = "<config>",
    env: Mapping[str, str] | None = None,
    registry: Mapping[str, ConnectorSpec] | None = None,
    channel_secrets: bool = True,
) -> Config:
    """Like `load_config`, from text; `file` is the name used in problems."""
    specs = dict(load_registry() if registry is None else registry)
    src = read_source(
        text,
        file=file,
        env=os.environ if env is None else env,
        is_secret=lambda path: _is_secret_path(path, specs),
        channel_secrets=channel_secrets,
    )
    if src.fatal:
        raise ConfigError(src.problems)
    context = {"registry": specs, "strict_secrets": True, "channel_secrets": channel_secrets}
    problems = list(src.problems)
    config: Config | None = None
    try:
        config = Config.model_validate(src.data, context=context)
    except ValidationError as exc:
        errors = exc.errors()
        # An unset variable is reported once, as such, not again by the field it broke
        # (and in a disabled channel's block it is no error at all).
        reported = [e for e in errors if not isinstance(e["input"], Unresolved)]
        if not reported and not problems:
            reported = errors  # never fail without saying why
        problems.extend(_problem(src, e, specs) for e in reported)
        # References are checked only once every section is valid; check them anyway.
        if any(e["type"] != "reference" for e in errors):
            problems.extend(_salvaged_reference_problems(src, context, specs))
    if problems:
        raise ConfigError(_sorted_unique(problems))
    assert config is not None
    return config


def check(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`omnirouter check`: 0 and a summary when valid, 2 and every problem otherwise."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    registry = load_registry()
    try:
        config = load_config(path, env, registry=registry)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        count = len(exc.problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=err)
        return 2
    enabled = len(config.enabled_channels)
    complaints = config.routing.complaints
    detection = ", ".join(sorted(complaints.vocabulary())) or (
        f"off (no skill {complaints.skill!r})"
        if complaints.skill not in {s.name for s in config.skills}
        else "off"
    )
    print(
        f"ok: {path} ({len(config.channels)} channels, {enabled} enabled;"
        f" {len(config.agents)} agents; {len(config.queues)} queues;"
        f" {len(config.routing.rules)} rules; complaints: {detection};"
        f" bus: {config.bus.backend})",
        file=out,
    )
    if not enabled:  # every agent is unreachable too: one line says both, as `run` does
        print("warning: no channel enabled: nothing comes in and no agent is reached", file=err)
        return 0
    # Valid, but work given to these agents would sit on a topic nothing reads.
    for agent_id, why in unreachable_agents(config, registry).items():
        print(f"warning: agent {agent_id} is unreachable ({why}): never assigned", file=err)
    return 0


# --- error locations ------------------------------------------------------------------


def _path(loc: Loc, src: Source) -> str:
    path = ""
    for part in loc:
        if isinstance(part, str) and _INTERNAL.fullmatch(part):
            if join_path(path, part) not in src.lines:
                continue
        path = join_path(path, part)
    return path


def _problem(
    src: Source,
    error: ErrorDetails,
    registry: Mapping[str, ConnectorSpec],
) -> ConfigProblem:
    loc = error["loc"]
    path = _path(loc, src)
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if error["type"] == "extra_forbidden":
        message = _unknown_key(loc, src, registry)
    elif error["type"] == "missing":
        message = "required key is missing"
    return src.problem(path, message)


def _unknown_key(loc: Loc, src: Source, registry: Mapping[str, ConnectorSpec]) -> str:
    model = _model_at(
        [p for p in loc[:-1] if not (isinstance(p, str) and _INTERNAL.fullmatch(p))], registry
    )
    if model is None or not loc or not isinstance(loc[-1], str):
        return "unknown key"
    allowed = [n for n, f in model.model_fields.items() if not f.exclude]
    if model is ChannelConfig:
        allowed.append("<type>")
    close = difflib.get_close_matches(loc[-1], allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key; expected one of: {', '.join(allowed)}"


def _model_at(
    loc: list[str | int],
    registry: Mapping[str, ConnectorSpec],
) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc`, if it is one."""
    tp: Any = Config
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp is ChannelConfig and isinstance(part, str) and part in registry:
                tp = registry[part].config
            elif isinstance(part, str) and part in tp.model_fields:
                tp = tp.model_fields[part].annotation
            else:
                return None
        elif get_origin(tp) is list and isinstance(part, int):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict and isinstance(part, str):
            tp = get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _is_secret_path(path: str, registry: Mapping[str, ConnectorSpec]) -> bool:
    """Whether the key at `path` (`channels[0].email.imap.password`) holds a secret."""
    loc: list[str | int] = [
        int(index) if index else key for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)
    ]
    if not loc or not isinstance(loc[-1], str):
        return False
    model = _model_at(loc[:-1], registry)
    field = model.model_fields.get(loc[-1]) if model is not None else None
    return field is not None and is_secret(field.annotation)


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _sorted_unique(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    seen: set[tuple[int | None, str, str]] = set()
    result: list[ConfigProblem] = []
    for p in sorted(problems, key=lambda p: (p.line or 0, p.path)):
        key = (p.line, p.path, p.message)
        if key not in seen:
            seen.add(key)
            result.append(p)
    return result


# --- references despite other errors --------------------------------------------------


def _salvaged_reference_problems(
    src: Source,
    context: dict[str, Any],
    registry: Mapping[str, ConnectorSpec],
) -> list[ConfigProblem]:
    """Drop what is invalid, validate the rest, and check its references.

    What goes is as little as can be: the invalid key first (an agent with a
    misspelt key keeps its skills and schedule, whose references are checked),
    its list item or section if that is not enough. Indices of dropped list
    items are remembered so the problems found point at the original positions.
    """
    data = _copy(src.data)
    kept: dict[Loc, list[int]] = {}  # list location -> original index of each item left
    tried: set[Loc] = set()  # keys already dropped: an error there again drops more
    sections: set[str | int] = set()  # top-level sections something was dropped from
    for _ in range(100):
        try:
            config = Config.model_validate(data, context={**context, "check_references": False})
        except ValidationError as exc:
            errors = exc.errors()
            sections.update(e["loc"][0] for e in errors if e["loc"])
            if not _prune(data, errors, kept, tried):
                return []
            continue
        problems = reference_problems(config, registry, names_in_data(src.data))
        result: list[ConfigProblem] = []
        for loc, message in problems:
            if _needs_all_of(message) & sections:
                continue  # a judgement on the whole section, which is not all here
            original = _original_loc(loc, kept)
            result.append(src.problem(_path(original, src), message))
        return result
    return []


def _needs_all_of(message: str) -> set[str | int]:
    """The sections a reference problem judges as a whole (not one name in them)."""
    if message.startswith("no agent has skill"):
        return {"agents", "routing", "skills"}
    if message.startswith("no text in the default language"):
        return {"templates", "routing"}
    return set()


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _prune(
    data: dict[str, Any], errors: list[ErrorDetails], kept: dict[Loc, list[int]], tried: set[Loc]
) -> bool:
    """Remove what each error is in: its key, else its list item or section. False if stuck."""
    locs: list[Loc] = []
    changed = False
    for error in errors:
        key = _key_in(data, error["loc"])
        if key is not None and error["type"] != "missing" and key not in tried:
            tried.add(key)
            parent = _get(data, key[:-1])
            assert isinstance(parent, dict)
            del parent[key[-1]]
            changed = True
        else:
            locs.append(error["loc"])
    return _prune_items(data, locs, kept) or changed


def _key_in(data: dict[str, Any], loc: Loc) -> Loc | None:
    """Where an error's location is in the data (pydantic adds parts that are not keys),
    if that is a key of a mapping inside a section; None for sections and list items."""
    found: list[str | int] = []
    node: Any = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            continue
        found.append(part)
    if len(found) < 2 or not isinstance(found[-1], str):
        return None
    return tuple(found)


def _prune_items(data: dict[str, Any], locs: list[Loc], kept: dict[Loc, list[int]]) -> bool:
    """Remove the list item or the section each location is in. False if stuck."""
    if not locs:
        return False
    items: dict[Loc, set[int]] = {}
    keys: set[Loc] = set()
    for loc in locs:
        first_index = next((k for k, p in enumerate(loc) if isinstance(p, int)), None)
        if first_index is not None and first_index > 0:
            items.setdefault(loc[:first_index], set()).add(int(loc[first_index]))
        elif (
            len(loc) >= 2
            and isinstance(_get(data, loc[:1]), dict)
            and _get(data, loc[:2]) is not None
        ):
            keys.add(loc[:2])
        elif loc and loc[0] in data and loc[0] != "version":
            keys.add(loc[:1])
        elif loc[:1] == ("version",):
            data["version"] = 1
        else:
            return False
    changed = False
    for list_loc, indices in items.items():
        container = _get(data, list_loc)
        if not isinstance(container, list):
            keys.add(list_loc[:1])
            continue
        original = kept.setdefault(list_loc, list(range(len(container))))
        for index in sorted(indices, reverse=True):
            if index < len(container):
                del container[index]
                del original[index]
                changed = True
    for key_loc in sorted(keys, key=len, reverse=True):
        parent = _get(data, key_loc[:-1])
        if isinstance(parent, dict) and key_loc[-1] in parent:
            del parent[key_loc[-1]]
            changed = True
    return changed or ("version",) in {loc[:1] for loc in locs}


def _get(data: Any, loc: Loc) -> Any:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _original_loc(loc: Loc, kept: dict[Loc, list[int]]) -> Loc:
    for list_loc, original in kept.items():
        n = len(list_loc)
        if loc[:n] == list_loc and len(loc) > n and isinstance(loc[n], int):
            return (*list_loc, original[int(loc[n])], *loc[n + 1 :])
    return loc
