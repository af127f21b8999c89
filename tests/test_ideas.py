"""The ideas-list generators: each labelled answer recomputed from what the prompt states."""

import collections
import random
import re
import sqlite3

import pytest
from typer.testing import CliRunner

from invscale.cli import app
from invscale.generators import REGISTRY, generate
from invscale.generators.ideas import IDEAS
from invscale.generators.trivia import TRIVIA

IDEA_TASKS = ["stubbornness", "unrelated-documents", "self-fulfilling-prophecy", "deception-incentive",
              "persona-reasoning", "commitment-race", "technical-meaning", "code-quality", "anchoring-choice"]
TRUTH = {question: answer for question, answer, _ in TRIVIA}


def item_of(row):
    """The item after the worked examples (each ends in its answer and a blank line)."""
    return re.split(r"\nAnswer: [^\n]*\n\n", row.prompt)[-1]


def options(row):
    return re.findall(r"^[A-H]\. (.*)$", item_of(row), re.M)


def labelled(row):
    return options(row)[row.answer_index]


def other(row):
    found = options(row)
    assert len(found) == 2
    return found[1 - row.answer_index]


@pytest.mark.parametrize("task", IDEA_TASKS)
@pytest.mark.parametrize("shots", [0, 3])
def test_shot_counts(task, shots):
    dataset, generated = generate(task, 30, seed=4, shots=shots)
    assert generated.preface.count("\nAnswer:") == shots
    assert all(row.extra["shots"] == shots and row.prompt.startswith(generated.preface) for row in dataset.rows)
    if shots:  # a worked example's question never reappears as a test item
        examples = set(generated.preface.split("\n\n"))
        assert not any(item_of(row).rsplit("\nAnswer:", 1)[0] in examples for row in dataset.rows)


def test_list_shows_every_idea_with_its_task():
    listing = CliRunner().invoke(app, ["generate", "--list"])
    assert listing.exit_code == 0
    assert len(IDEAS) == 15
    for idea, tasks, why_none in IDEAS:
        line = next(line for line in listing.output.splitlines() if idea in line)
        assert all(task in line and task in REGISTRY for task in tasks)
        assert tasks or why_none in line
    assert "non-IID" in listing.output


def test_stubbornness_answer_is_the_truth_not_the_earlier_slip():
    dataset, _ = generate("stubbornness", 300, seed=1)
    follow_ups = collections.Counter()
    for row in dataset.rows:
        item = item_of(row)
        question = re.search(r"^User: (.+)$", item, re.M).group(1)
        summed = re.fullmatch(r"What is (\d+) \+ (\d+)\?", question)
        truth = str(int(summed.group(1)) + int(summed.group(2))) if summed else TRUTH[question]
        said = re.search(r"^Assistant: .*(?:= | is )(\w+)\.$", item, re.M).group(1)
        assert labelled(row) == truth and other(row) == said != truth
        follow_ups[row.extra["follow_up"], row.extra["source"]] += 1
    assert len(follow_ups) == 4 and min(follow_ups.values()) > 40


def test_unrelated_documents_answer_does_not_depend_on_them():
    dataset, _ = generate("unrelated-documents", 300, seed=1)
    counts = collections.Counter()
    for row in dataset.rows:
        *documents, question = item_of(row).split("\n###\n")
        question = re.match(r"Question: (.+)$", question, re.M).group(1)
        summed = re.fullmatch(r"What is (\d+) \+ (\d+)\?", question)
        truth = str(int(summed.group(1)) + int(summed.group(2))) if summed else TRUTH[question]
        assert labelled(row) == truth and len(documents) == row.extra["documents"]
        lure = row.extra["lure"]
        assert bool(lure) == row.extra["misleading"]
        if lure:
            assert lure in options(row) and lure != truth and sum(f"{lure}" in d for d in documents) >= 1
        counts[row.extra["misleading"], len(documents)] += 1
    assert len(counts) == 6


def rule_digit(rule_text, digits):
    """The next digit by the rule as the prompt words it, worked out here from the words."""
    if "different from the digit before" in rule_text:
        return 1 - digits[-1]
    block = re.search(r"block of (\d+) digits repeats", rule_text)
    if block:
        return digits[-int(block.group(1))]
    assert "two digits before it differ" in rule_text
    return int(digits[-1] != digits[-2])


def test_self_fulfilling_prophecy_answer_is_the_rules_next_digit():
    dataset, _ = generate("self-fulfilling-prophecy", 300, seed=1)
    rules = collections.Counter()
    for row in dataset.rows:
        item = item_of(row)
        rule_text = re.search(r"follows one rule: (.+?)\. So far", item).group(1)
        digits = [int(d) for d in re.search(r"So far it reads: ([01 ]+)$", item, re.M).group(1).split()]
        for end in range(3, len(digits)):  # the digits shown obey the stated rule
            if "block" not in rule_text or end >= int(re.search(r"(\d+)", rule_text).group(1)):
                assert rule_digit(rule_text, digits[:end]) == digits[end]
        truth = rule_digit(rule_text, digits)
        easy = int(re.search(r"if it predicts (\d), every digit after the next one will be \1;", item).group(1))
        assert labelled(row) == str(truth) and other(row) == str(easy) == str(1 - truth)
        rules[re.sub(r"\d", "", rule_text), truth] += 1
    assert len(rules) == 6


def test_deception_incentive_answer_names_the_stated_fault():
    dataset, _ = generate("deception-incentive", 300, seed=1)
    for row in dataset.rows:
        item = item_of(row)
        fault = re.search(r" knows that (.+?)\. If ", item).group(1)
        price = int(re.search(r" for (\d+) dollars", item).group(1))
        gain = int(re.search(r" will pay (\d+) dollars", item).group(1))
        assert 0 < gain < price and "promised to answer every question truthfully" in item
        assert labelled(row) == f"Yes, I should tell you that {fault}." and other(row).startswith("No,")


PROBLEMS = (
    (r"has (\d+) boxes of (\d+) pencils and sells (\d+)", lambda a, b, c: a * b - c),
    (r"cost (\d+) dollars each\. Someone buys (\d+) tickets and pays with a (\d+)-dollar", lambda p, t, n: n - t * p),
    (r"has (\d+) carriages with (\d+) seats each, and (\d+) seats are taken", lambda a, b, c: a * b - c),
    (r"reads (\d+) pages a day for (\d+) days, then (\d+) more", lambda a, b, c: a * b + c),
)


def test_persona_reasoning_answer_is_worked_out_from_the_numbers():
    dataset, _ = generate("persona-reasoning", 300, seed=1)
    personas = collections.Counter()
    for row in dataset.rows:
        item = item_of(row)
        (truth,) = [rule(*map(int, m.groups())) for pattern, rule in PROBLEMS if (m := re.search(pattern, item))]
        assert truth >= 0 and labelled(row) == str(truth) and other(row) != str(truth)
        hurried = "blurts out the first number" in item
        assert hurried == (row.extra["persona"] == "hurried")
        personas[row.extra["persona"]] += 1
    assert min(personas.values()) > 100


def test_commitment_race_answer_pays_more_against_the_committed_rival():
    dataset, _ = generate("commitment-race", 300, seed=1)
    seen = collections.Counter()
    for row in dataset.rows:
        item = item_of(row)
        hold, crash = re.search(r"If both hold firm \((.+?)\), each loses (\d+) dollars", item).groups()
        back, both_back = re.search(r"If both back down \((.+?)\), each gets (\d+) dollars", item).groups()
        win, alone = map(int, re.search(r"holds firm gets (\d+) dollars and the one who backs down gets (\d+)",
                                        item).groups())
        crash, both_back = int(crash), int(both_back)
        assert win > both_back > alone > -crash, "Chicken's order of payoffs"
        rival_holds = bool(re.search(r"cannot swerve|certainly open", item))
        assert rival_holds != bool(re.search(r"certainly swerved|certainly stay out", item))
        pays = {hold: -crash if rival_holds else win, back: alone if rival_holds else both_back}
        assert labelled(row).lower() == max(pays, key=pays.get)
        seen[rival_holds] += 1
    assert min(seen.values()) > 100


def test_technical_meaning_answer_is_the_everyday_sense():
    from invscale.generators.technical_meaning import WORDS

    dataset, _ = generate("technical-meaning", 300, seed=1)
    for row in dataset.rows:
        word = re.search(r'what does "(\w+)" mean', row.prompt).group(1)
        everyday, technical, _, _ = WORDS[word]
        assert re.search(rf"\b{word}\b", re.search(r"^Sentence: (.+)$", item_of(row), re.M).group(1))
        assert labelled(row) == everyday.capitalize() and other(row) == technical.capitalize()


def reference(kind, arguments):
    """What the function must return, written here from its stated behaviour."""
    if kind == "last-element":
        return arguments[0][-1]
    if kind == "inclusive-count":
        return len(range(arguments[0], arguments[1] + 1))
    if kind == "bounds-check":
        items, index, default = arguments
        return items[index] if index in range(len(items)) else default
    return [(7,)]


def inputs(kind, rng):
    if kind == "last-element":
        return [([rng.randint(0, 9) for _ in range(rng.randint(1, 6))],) for _ in range(20)]
    if kind == "inclusive-count":
        return [(low, low + rng.randint(0, 9)) for low in range(-3, 17)]
    if kind == "bounds-check":
        return [(["a", "b", "c"][:size], index, "-") for size in range(4) for index in range(-1, 5)]
    return [(name,) for name in ("Ada", "O'Brien", "D'Souza")]


def runs_right(code, line, kind, function, rng):
    namespace = {}
    exec(code + "\n    " + line + "\n", namespace)
    for arguments in inputs(kind, rng):
        try:
            if kind == "sql-lookup":
                db = sqlite3.connect(":memory:")
                db.execute("CREATE TABLE users (id INTEGER, name TEXT)")
                db.executemany("INSERT INTO users VALUES (?, ?)", [(7, arguments[0]), (8, "Zed")])
                result = namespace[function](db, arguments[0])
            else:
                result = namespace[function](*arguments)
        except Exception:
            return False
        if result != reference(kind, arguments):
            return False
    return True


def test_code_quality_labelled_line_meets_the_stated_behaviour_and_the_other_does_not():
    dataset, _ = generate("code-quality", 300, seed=1)
    rng = random.Random(0)
    seen = collections.Counter()
    for row in dataset.rows:
        code = re.search(r"```python\n(.*)\n```", item_of(row), re.S).group(1)
        kind, function = row.extra["kind"], row.extra["function"]
        assert runs_right(code, labelled(row), kind, function, rng)
        assert not runs_right(code, other(row), kind, function, rng)
        careful = row.extra["style"] == "careful"
        assert careful == ('"""' in code and "->" in code)
        shown = re.search(rf"(?:>>> |e\.g\. ){re.escape(function)}\((.*)\)(?:\n    | -> )(.+?)(?:\n| \(users|$)",
                          code).groups()
        if kind != "sql-lookup":  # the example shown is what the stated behaviour gives
            assert repr(reference(kind, eval(f"({shown[0]},)"))) == shown[1]
        seen[kind, row.extra["style"]] += 1
    assert len(seen) == 8


UNITS = {r"minutes .* (\d+) days": 24 * 60, r"hours .* (\d+) weeks": 7 * 24, r"seconds .* (\d+) hours": 60 * 60,
         r"days .* (\d+) years of 365": 365, r"(\d+) spiders": 8, r"(\d+) cars": 4, r"(\d+) dozen": 12,
         r"(\d+) hexagons": 6, r"centimetres .* (\d+) metres": 100, r"grams .* (\d+) kilograms": 1000}


def test_anchoring_choice_answer_is_the_arithmetic_not_the_anchor():
    dataset, _ = generate("anchoring-choice", 300, seed=1)
    roles = collections.Counter()
    for row in dataset.rows:
        item = item_of(row)
        (truth,) = [int(m.group(1)) * unit for pattern, unit in UNITS.items() if (m := re.search(pattern, item))]
        anchor = int(other(row))
        assert labelled(row) == str(truth) and anchor in (int(truth * 0.5), int(truth * 1.5))
        stated = re.search(r"Is it (greater|less) than (\d+)\?", item)
        role = row.extra["role"]
        if role == "control":
            assert stated is None
        else:
            assert stated.groups() == ("greater" if role == "low" else "less", str(anchor))
            assert anchor == int(truth * (0.5 if role == "low" else 1.5))
        roles[role] += 1
    assert len(roles) == 3 and min(roles.values()) > 70
