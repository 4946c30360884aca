"""YAML read safely: tags refused (``SafeLoader``), a bound on what aliases expand to, and
no key given twice in one mapping.

``yaml.safe_load`` shares an aliased node instead of copying it, so a 363-byte
"billion laughs" file loads at once; the blow-up comes later, when something walks
the result as a tree (``json.dumps`` of a grid used 5 GB). Here the document's
*expanded* size (every alias counted as the whole node it names) is measured on the
composed node graph, with one memo per node, before anything is constructed.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["MAX_NODES", "safe_load"]

#: the most nodes a document may expand to (a grid has a few hundred)
MAX_NODES = 100_000


def _expanded(node: yaml.Node, memo: dict[int, int]) -> int:
    key = id(node)
    if key not in memo:
        memo[key] = 0  # a node that contains itself counts once on its way round
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        memo[key] = 1 + sum(_expanded(c, memo) for c in children)
    return memo[key]


def _refuse_duplicate_keys(node: yaml.Node, where: str, seen: set[int]) -> None:
    """A key given twice in one mapping is an error: YAML loaders keep the last one, so
    a grid with two arms of one name silently ran one of them."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                line = key.start_mark.line + 1
                if key.value in keys:
                    raise ConfigError(
                        f'"{where}", line {line}: the key "{key.value}" is given again (first '
                        f"on line {keys[key.value]}); only one would be kept. Give each its "
                        "own name, or remove one."
                    )
                keys[key.value] = line
            _refuse_duplicate_keys(key, where, seen)
            _refuse_duplicate_keys(value, where, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, where, seen)


def safe_load(text: str, where: str, max_nodes: int = MAX_NODES) -> Any:
    """``yaml.safe_load(text)``, refusing a document that expands past ``max_nodes``."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded(node, {})
        if size > max_nodes:
            raise ConfigError(
                f'"{where}" expands to {size:,} YAML nodes through its aliases (&name / '
                f"*name), more than the {max_nodes:,} allowed: it looks like an alias bomb. "
                "Write the values out instead of nesting aliases."
            )
        _refuse_duplicate_keys(node, where, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()
