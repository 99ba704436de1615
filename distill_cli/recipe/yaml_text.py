"""How distill reads and writes recipe YAML: the one loader and the one dumper.

PyYAML implements YAML 1.1, whose implicit types turn what people type into other values
without a word: `seed: 010` is 8 (octal), `crop_ratio: [3:4, 4:3]` is [184, 243]
(base 60), class folders `[001, 002, 010]` are the names "1", "2", "8", a class folder `no`
is false, and `drop_rate: 1e-1` is the *text* "1e-1" (a float needs a dot), which reached
timm as a string through `kwargs`. The recipe is read with YAML 1.2's core types instead,
the reading every current YAML tool and a reader have of such values:

- numbers: decimal (`1_000` too), `0x`/`0o`/`0b`, and floats with a dot or an exponent
  (`1e-3`, `5e4`, `.5`, `.inf`, `.nan`); a number with a leading zero (`007`) and `1:30`
  are text: a name keeps its zeros, a number key reads `007` as 7 and refuses `1:30`;
- true/false: only `true`/`false` (any case). `yes`/`no`/`on`/`off`/`y`/`n` are text,
  which a key that takes true/false reads as such (`flip: no`), a number key refuses
  (`sections.refuse_bool`) and a name keeps (`class_names: [no, yes]`);
- dates are text; duplicate keys are refused with their line (PyYAML keeps the last);
- aliases (`*name`) that expand to more than :data:`MAX_EXPANDED` values are refused before
  anything is built from them: ten nested lists of ten aliases each are 10^10 values, which
  the validation walked for minutes (a "billion laughs" in a recipe or a `--set` value);
- the tags that make other Python types than a recipe's (`!!binary`, `!!set`, `!!timestamp`,
  `!!omap`, `!!pairs`) are refused like unknown ones (`!!python/object:...`, `!local`), naming
  the tag (PyYAML's "could not determine a constructor for the tag" said "fix the YAML").

The dumper quotes every text that YAML 1.1 or this loader would read as anything else,
so a saved recipe reads back the same here and in any other YAML tool.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

#: YAML 1.1's words for true/false that YAML 1.2 reads as text (`true`/`false` aside).
BOOL_WORDS = frozenset(
    w for word in ("yes", "no", "on", "off", "y", "n") for w in (word, word.title(), word.upper())
)

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_MERGE = re.compile(r"^(?:<<)$")
_DIGITS = list("-+0123456789.")

_TAG = "tag:yaml.org,2002:"
#: (tag, pattern, first characters) of the recipe's implicit types, in the order tried.
_TYPES = [
    (_TAG + "bool", _BOOL, list("tTfF")),
    (_TAG + "null", _NULL, ["~", "n", "N", ""]),
    (_TAG + "int", _INT, _DIGITS),
    (_TAG + "float", _FLOAT, _DIGITS),
    (_TAG + "merge", _MERGE, ["<"]),
]


def _resolvers(types: list[tuple[str, re.Pattern[str], list[str]]]) -> dict[Any, Any]:
    table: dict[Any, Any] = {}
    for tag, pattern, first in types:
        for char in first:
            table.setdefault(char, []).append((tag, pattern))
    return table


def _int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        return int(text, 0)
    except ValueError:  # over Python's 4,300 digits (sys.int_info): a traceback from int()
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"a {len(text):,}-digit number is more than any setting takes",
            node.start_mark,
        ) from None


def _float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node)).replace("_", "").lower()
    if text.lstrip("+-") == ".inf":
        return float(text.replace(".", ""))
    return float("nan") if text == ".nan" else float(text)


#: The most values aliases may expand a document to (a recipe holds hundreds; a class list of
#: ImageNet-21k 21,841, written out rather than aliased).
MAX_EXPANDED = 100_000

#: The tags of YAML's safe types that no recipe key takes: they made bytes, sets, datetimes
#: and lists of pairs, refused later as "Input should be a valid number" or passed on to timm.
_FOREIGN_TAGS = ("binary", "set", "timestamp", "omap", "pairs")


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values `node` stands for once every alias in it is expanded (each shared node
    counted at each use, measured once: `sizes` memoizes by node)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, sizes) for item in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    else:
        size = 1
    sizes[id(node)] = size
    return size


def _refuse_tag(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    tag = str(node.tag).replace(_TAG, "!!")
    raise yaml.constructor.ConstructorError(
        None, None, f"the tag {tag} is not read in a recipe", node.start_mark
    )


class RecipeLoader(yaml.SafeLoader):
    """YAML's safe loader with YAML 1.2's core types (see the module), refusing a key written
    twice in one mapping.

    Plain YAML keeps the last of two equal keys without a word, so a second `schedule:`
    section (a paste, a merge) silently replaced the first one's settings. Merge keys (`<<`)
    still let a mapping override what it merges in.
    """

    yaml_implicit_resolvers = _resolvers(_TYPES)

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            sizes: dict[int, int] = {}
            if _expanded_size(node, sizes) > max(MAX_EXPANDED, len(sizes)):
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"its aliases (*name) expand to more than {MAX_EXPANDED:,} values",
                    node.start_mark,
                )
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    "a key must be a plain word, not a list or mapping",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (keep one)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


RecipeLoader.add_constructor(_TAG + "int", _int)
RecipeLoader.add_constructor(_TAG + "float", _float)
for _foreign in _FOREIGN_TAGS:
    RecipeLoader.add_constructor(_TAG + _foreign, _refuse_tag)
RecipeLoader.add_constructor(None, _refuse_tag)  # any other tag: `!!python/object:...`, `!foo`


class RecipeDumper(yaml.SafeDumper):
    """The safe dumper quoting text that YAML 1.1 (other tools, earlier distill versions) or
    `RecipeLoader` would read as a number, true/false, null or a date."""

    yaml_implicit_resolvers = {
        char: [*yaml.SafeDumper.yaml_implicit_resolvers.get(char, []), *ours]
        for char, ours in _resolvers(_TYPES).items()
    } | {
        char: found
        for char, found in yaml.SafeDumper.yaml_implicit_resolvers.items()
        if char not in _resolvers(_TYPES)
    }


#: What to do about PyYAML's syntax errors, by the words of their `problem`: "fix the YAML"
#: alone left a user with "mapping values are not allowed here" and a line number.
_SYNTAX_ADVICE = [
    ("'\\t'", "indent with spaces: YAML does not allow tabs"),
    (
        "cannot start any token",
        "a value starting with @, `, % or ! needs quotes ('@value')",
    ),
    (
        "mapping values are not allowed",
        "write `key: value` with a space after the colon (here or on the line above), indent "
        "this key like the others of its section, and quote a value that holds ': ' "
        "('/mnt/a: b')",
    ),
    ("expected <block end>", "indent the keys of one section to the same column"),
    ("another document", "a recipe is one YAML document: remove the second `---` and what follows"),
    ("end of stream", "close the quote or bracket opened before"),
    ("undefined alias", "define the anchor (&name) before its alias (*name)"),
    ("aliases (*name) expand", "write the values out, or alias fewer of them"),
    (
        "is not read in a recipe",
        "remove the tag (!!name): a recipe holds plain numbers, text, true/false, lists and "
        "mappings",
    ),
    ("expected ',' or", "close the bracket, or quote a value that holds , [ ] { }"),
    ("more than any setting takes", "write the value meant"),
]


def syntax_advice(problem: str) -> str:
    """What to change for a YAML syntax error's `problem`."""
    return next((advice for words, advice in _SYNTAX_ADVICE if words in problem), "fix the YAML")


def parse_yaml(text: str) -> Any:
    """A recipe's YAML text (a file, a `--set` value, a saved run's recipe) as data."""
    return yaml.load(text, Loader=RecipeLoader)  # a SafeLoader: no Python objects


def recipe_text(data: Any) -> str:
    """A recipe's YAML as distill writes it (run folders, `students --write-recipe`, reports):
    keys in the recipe's order, text as typed, and no line folded, so a long path stays on one
    line where grep and a reader find it (PyYAML folds plain scalars at 80 columns)."""
    return yaml.dump(
        data,
        Dumper=RecipeDumper,
        sort_keys=False,
        allow_unicode=True,
        width=float("inf"),  # type: ignore[arg-type]
    )
