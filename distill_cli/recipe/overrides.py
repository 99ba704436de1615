"""`--set` overrides: dotted keys put into a recipe's data, values read as a command line
types them (`set_value`). Used on a file's data before validation, and on a `Recipe` by
`document.override_recipe`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from distill_cli.errors import DistillError
from distill_cli.host import MAX_NESTING, nesting_depth
from distill_cli.recipe.yaml_text import parse_yaml, syntax_advice

#: `--set` strings (`optim.lr=3e-3`, values read by `set_value`), or a mapping of dotted keys to
#: Python values (the API's `optim__lr=3e-3` keywords become `{"optim.lr": 3e-3}`).
Overrides = list[str] | Mapping[str, Any]


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
    """Put `value` at the dotted `key`, making the sections on the way; a number indexes a
    list (`teacher.1.checkpoint` in an ensemble, `optim.betas.1`). A part of the key that is
    an existing value, not a section (`schedule.epochs.x=1`), is refused here: replacing it
    by a section was reported as "schedule.epochs: Input should be a valid integer", about a
    value the user had not changed, and an ensemble's list of teachers became one teacher."""
    node: Any = raw
    where = f"--set {key.strip()[:60]}"
    parts = [part.strip() for part in key.strip().split(".")]
    if "" in parts:
        raise DistillError(
            f"the key {key.strip()!r} has an empty part",
            where,
            "write the key's dotted path, e.g. schedule.epochs=3",
        )
    if parts[0] == "model" and "model" not in raw:  # `student`'s alias (see `validated`)
        parts[0] = "student"
    for depth, part in enumerate(parts):
        above = ".".join(parts[:depth])
        if isinstance(node, list):
            if not (part.isdigit() and int(part) < len(node)):
                rest = ".".join(parts[depth + int(part.isdigit()) :])
                each = [f"{above}.{i}" + (f".{rest}" if rest else "") for i in range(len(node))]
                raise DistillError(
                    f"{above} is a list of {len(node)}: {part!r} is not one of its positions",
                    where,
                    f"write {' or '.join(each[:4])}" if node else f"set the list: {above}=[...]",
                )
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
        else:
            raise DistillError(
                f"{above} is a value ({str(node)[:40]}), not a section: it has no key {part!r}",
                where,
                f"set it as {above}=VALUE",
            )
        if depth == len(parts) - 1:
            node[index] = value
        elif isinstance(node, dict) and node.get(index) is None:
            node[index] = {}
        node = node[index]


#: What a `--set` (or `--model-arg`) value may be, said when one is refused.
SET_VALUES = "one value on one line: a number, true/false, null, text, a [list] or a {mapping}"


def set_value(text: str, where: str = "--set") -> Any:
    """A `--set` value as typed on a command line: YAML for numbers, true/false, null, lists
    (`[32, 32]`) and mappings (`{a: 1}`), and anything else as the text typed.

    Read as YAML alone, `data.root=/data/set #2` was the folder "/data/set" (`#` starts a YAML
    comment), `data.root=/mnt/a: b` a mapping and `data.root=@home/x` a syntax error; a shell
    has no such rules, so plain text is kept whole (surrounding spaces aside). Quoting
    (`'"my dir"'`) still works as in YAML.

    What only YAML documents hold is refused in one line naming `where` (`--set KEY`): a line
    break (a pasted block, a second document after `---`: the value was the text of all its
    lines), an anchor or alias (`&a {lr: 0.1}` was the text "&a {lr: 0.1}", blamed on the
    section; nothing else in a command line can refer to it, and aliases nested ten deep
    expand to billions of values) and a tag no recipe reads (`!!python/object:...`)."""
    stripped = text.strip()
    shown = repr(stripped[:60])
    if "\n" in stripped or "\r" in stripped:
        raise DistillError(f"the value {shown} holds a line break", where, f"give {SET_VALUES}")
    written_as_yaml = stripped[:1] in ("[", "{", '"', "'", "!", "&", "*")
    if written_as_yaml:
        _refuse_references(stripped, shown, where)
    try:
        parsed = parse_yaml(text)
    except yaml.YAMLError as exc:
        if not written_as_yaml:
            return stripped
        problem = getattr(exc, "problem", None)
        raise DistillError(
            f"the value {shown} is unparsable" + (f": {problem}" if problem else ""),
            where,
            f"{syntax_advice(problem or '')}; give {SET_VALUES}",
        ) from exc
    except RecursionError:
        raise DistillError(
            f"the value nests more than {MAX_NESTING} levels deep", where, "flatten it"
        ) from None
    if not written_as_yaml and isinstance(parsed, (str, dict, list)):
        return stripped
    return parsed


def _refuse_references(text: str, shown: str, where: str) -> None:
    """A YAML anchor (`&a`) or alias (`*a`) in a `--set` value, refused (see `set_value`)."""
    try:
        tokens = list(yaml.scan(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return  # parse_yaml says what is wrong with it
    for token in tokens:
        if isinstance(token, yaml.AnchorToken):
            raise DistillError(
                f"the value {shown} holds a YAML anchor (&{token.value}): nothing on a command "
                "line can refer to it",
                where,
                f"drop the &{token.value}, or quote text that starts with & ('&...'); give "
                + SET_VALUES,
            )
        if isinstance(token, yaml.AliasToken):
            raise DistillError(
                f"the value {shown} holds a YAML alias (*{token.value}): a --set value cannot "
                "refer to an anchor of the recipe file",
                where,
                "write the value itself, or quote text that starts with * ('*...'); give "
                + SET_VALUES,
            )


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested recipe data as dotted keys (`optim.lr`), the form `--set` and compare use."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _shallow(key: str, value: Any, where: str) -> Any:
    """`value` when it and its key (whose dots nest too: `a.a.a...`) stay within MAX_NESTING
    levels; deeper data would exhaust the stack while it is validated."""
    if key.count(".") + 1 + nesting_depth(value) > MAX_NESTING:
        raise DistillError(
            f"the value nests more than {MAX_NESTING} levels deep", where, "flatten it"
        )
    return value


def apply_overrides(raw: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides in order, values read by `set_value` (numbers and lists keep
    their type). A key given twice takes the last value, without a word: later flags override
    earlier ones, as in every CLI, and a script appending its own `--set` to a base command
    relies on that (a refusal would break it; a note would be noise on every such run)."""
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            value = value.as_posix() if isinstance(value, Path) else value
            _set(raw, key, _shallow(key, value, key))
        return raw
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DistillError(
                f"override {item[:80]!r} is not KEY=VALUE", "--set", _key_value_advice(item)
            )
        where = f"--set {key.strip()[:60]}"
        parsed = set_value(value, where)
        _set(raw, key, _shallow(key, parsed, where))
    return raw


def _key_value_advice(item: str) -> str:
    """What to write for a `--set` without its `=`: `schedule.epochs 3` (a space, as other
    tools take it) is `schedule.epochs=3`."""
    key, _, value = item.strip().partition(" ")
    if key and value.strip() and "=" not in item:
        return f"write --set {key}={value.strip()} (no space)"
    return "e.g. --set optim.lr=3e-3"
