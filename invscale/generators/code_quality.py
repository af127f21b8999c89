"""code-quality: the correct next line whether the code around it is careful or sloppy (Prize
ideas list: code quality cues).

Each item shows a short Python function with a bug-prone last line: the last element of a list
(off by one), how many integers lie between two bounds with both included (off by one), an item
or a default when the index is out of range (a missing bounds check), and the ids of users with a
given name, read from SQLite (a name with a quote in it breaks a query built by string
formatting). The function is written either in careful style (type hints, a docstring and a
doctest) or in sloppy style (short names, a terse comment with one example), the ``style`` column,
so accuracy can be split by it. Both styles state what the function must return and show one
example, worked out by running the correct line. The options are the correct last line and a
buggy one; the correct one is labelled because it meets the stated behaviour on every input and
the buggy one does not (the test runs both). Code written carelessly is followed by more careless
code in training text, so a model that predicts the likely next line rather than the correct one
picks the bug more often after sloppy code.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from typing import Callable

from invscale.generators.base import GeneratorSpec, Item, lettered_item


@dataclass(frozen=True)
class Kind:
    """One bug-prone function: its behaviour, names and parameters in each style, and its last line
    right and wrong (templates over the parameters ``{0}``, ``{1}``, ...)."""

    spec: str
    terse: str
    careful: tuple[str, ...]  # typed parameters
    returns: str
    sloppy: tuple[str, ...]
    right: str
    wrong: str
    careful_names: tuple[str, ...]
    sloppy_names: tuple[str, ...]
    example: Callable[[random.Random], tuple]  # the arguments shown in the example
    bug: str


def _names(rng: random.Random) -> list[str]:
    return rng.sample(["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen"], rng.randint(2, 4))


KINDS = {
    "last-element": Kind(
        "Return the last element of a non-empty list.", "last item of l", ("values: list[int]",), "int", ("l",),
        "return {0}[len({0}) - 1]", "return {0}[len({0})]", ("last_value", "final_element", "last_item"),
        ("lst", "getlast", "lv"), lambda rng: ([rng.randint(1, 99) for _ in range(rng.randint(2, 5))],),
        "indexes one past the end of the list"),
    "inclusive-count": Kind(
        "Return how many integers lie from low to high, both included (low <= high).", "how many ints a..b, both "
        "incl", ("low: int", "high: int"), "int", ("a", "b"), "return {1} - {0} + 1", "return {1} - {0}",
        ("count_between", "span_size", "how_many"), ("cnt", "n_between", "rng_len"),
        lambda rng: (lambda low: (low, low + rng.randint(1, 20)))(rng.randint(0, 30)),
        "leaves out one of the two ends"),
    "bounds-check": Kind(
        "Return items[index], or default when index is outside the list.", "l[i], or d if i out of range",
        ("items: list[str]", "index: int", "default: str"), "str", ("l", "i", "d"),
        "return {0}[{1}] if 0 <= {1} < len({0}) else {2}", "return {0}[{1}] if 0 <= {1} <= len({0}) else {2}",
        ("item_or_default", "safe_get", "get_at"), ("g", "get", "at"),
        lambda rng: (lambda names: (names, len(names) if rng.random() < 0.5 else rng.randrange(len(names)), "-"))(
            _names(rng)),
        "lets index equal the list's length through, which raises IndexError"),
    "sql-lookup": Kind(
        "Return the ids of the users called name, as rows from db's users(id, name) table.",
        "ids of users named n", ("db: sqlite3.Connection", "name: str"), "list[tuple[int]]", ("c", "n"),
        "return {0}.execute(\"SELECT id FROM users WHERE name = ?\", ({1},)).fetchall()",
        "return {0}.execute(f\"SELECT id FROM users WHERE name = '{{{1}}}'\").fetchall()",
        ("user_ids", "ids_named", "find_user_ids"), ("q", "ids", "uid"),
        lambda rng: ("db", rng.choice(("O'Brien", "D'Souza", "O'Neil", "N'Dour", "D'Angelo"))),
        "builds the query by string formatting, so a name with a quote in it breaks it"),
}


def example_result(kind: str, right: str, parameters: tuple[str, ...], arguments: tuple) -> str:
    """The example's result as Python prints it, by running the correct ``right`` line on ``arguments``
    (the SQL example runs on a table whose one row is the name with id 7)."""
    source = f"def function({', '.join(parameters)}):\n    {right}\n"
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 (the project's own template, not user input)
    if kind == "sql-lookup":
        db = sqlite3.connect(":memory:")
        db.execute("CREATE TABLE users (id INTEGER, name TEXT)")
        db.execute("INSERT INTO users VALUES (7, ?)", (arguments[1],))
        return repr(namespace["function"](db, arguments[1]))
    return repr(namespace["function"](*arguments))


def _call(name: str, arguments: tuple) -> str:
    return f"{name}({', '.join(arg if arg == 'db' else repr(arg) for arg in arguments)})"


def draw(rng: random.Random, position: int) -> Item:
    """One function in careful or sloppy style, the correct last line at option ``position`` (0 or 1)."""
    kind_name = rng.choice(sorted(KINDS))
    kind = KINDS[kind_name]
    style = rng.choice(("careful", "sloppy"))
    careful = style == "careful"
    name = rng.choice(kind.careful_names if careful else kind.sloppy_names)
    parameters = tuple(p.split(":")[0] for p in kind.careful) if careful else kind.sloppy
    arguments = kind.example(rng)
    right, wrong = kind.right.format(*parameters), kind.wrong.format(*parameters)
    result = example_result(kind_name, right, parameters, arguments)
    call = _call(name, arguments)
    if careful:
        imports = "import sqlite3\n\n\n" if kind_name == "sql-lookup" else ""
        setup = "    >>> # users holds the row (7, {!r})\n".format(arguments[1]) if kind_name == "sql-lookup" else ""
        code = (f"{imports}def {name}({', '.join(kind.careful)}) -> {kind.returns}:\n    \"\"\"{kind.spec}\n\n"
                f"{setup}    >>> {call}\n    {result}\n    \"\"\"")
    else:
        setup = f" (users has (7, {arguments[1]!r}))" if kind_name == "sql-lookup" else ""
        code = f"def {name}({','.join(parameters)}):  # {kind.terse}, e.g. {call} -> {result}{setup}"
    body = f"```python\n{code}\n```\nQuestion: Which line comes next, as the function's last line?"
    reasoning = (f"The function must do this: {kind.spec[0].lower() + kind.spec[1:-1]}. `{right}` does, and "
                 f"`{wrong}` {kind.bug}. So the right line is `{right}`, option X.")
    return lettered_item(body, right, [wrong], position, rng, key=(kind_name, style, name, repr(arguments)),
                         params={"kind": kind_name, "style": style, "function": name}, reasoning=reasoning)


SPEC = GeneratorSpec("code-quality", "the correct or a buggy last line of a function written carefully or sloppily",
                     draw, n_positions=2)
