"""Generators: deterministic, balanced, valid prize format, and right by an independent check."""

import collections
import io
import json
import re
from contextlib import redirect_stdout

import pytest
from typer.testing import CliRunner

from invscale.cli import app
from invscale.data import read_dataset, write_dataset
from invscale.generators import REGISTRY, generate
from invscale.generators.trivia import TRIVIA

TASKS = sorted(REGISTRY)
CHOICE_TASKS = sorted(task for task in REGISTRY if REGISTRY[task].build is None)  # multiple-choice items


def as_jsonl(dataset):
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        write_dataset(dataset, None)
    return buffer.getvalue()


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_bytes_other_seed_other_rows(task):
    first, _ = generate(task, 60, seed=5)
    again, _ = generate(task, 60, seed=5)
    other, _ = generate(task, 60, seed=6)
    assert as_jsonl(first) == as_jsonl(again)
    assert as_jsonl(first) != as_jsonl(other)


@pytest.mark.parametrize("task", CHOICE_TASKS)
def test_rows_are_valid_distinct_balanced_and_share_the_preface(task, tmp_path):
    dataset, generated = generate(task, 300, seed=2)
    for suffix in ("csv", "jsonl"):
        path = tmp_path / f"{task}.{suffix}"
        write_dataset(dataset, path)
        reread = read_dataset(str(path))
        assert [r.prompt for r in reread.rows] == [r.prompt for r in dataset.rows]
        assert [r.answer_index for r in reread.rows] == [r.answer_index for r in dataset.rows]
        assert reread.rows[0].extra["task"] == task and reread.warnings == []
    rows = dataset.rows
    assert len({r.prompt for r in rows}) == len(rows), "no duplicate items while the space allows"
    counts = collections.Counter(r.answer_index for r in rows)
    assert len(counts) == REGISTRY[task].n_positions and max(counts.values()) - min(counts.values()) <= 1
    assert all(r.prompt.startswith(generated.preface) for r in rows)
    assert all(c.startswith(" ") for r in rows for c in r.classes)


def option_text(row, index):
    return re.search(rf"^{'ABCD'[index]}\. (.*)$", row.prompt.split("\n\n")[-1], re.M).group(1)


def test_gambling_answer_is_one_in_sides():
    dataset, _ = generate("gambling", 300, seed=1)
    for row in dataset.rows:
        sides = int(re.search(r"throws an? (\d+) sided", row.prompt).group(1))
        assert option_text(row, row.answer_index) == f"1 in {sides}"
        for number in re.findall(r"\b(an?) (\d+)\b", row.prompt):
            article, value = number
            assert (article == "an") == (value.startswith("8") or value in ("11", "18"))


def test_decoy_answer_is_the_stated_preference_and_c_is_dominated_only_by_the_other():
    dataset, _ = generate("decoy", 300, seed=1)
    for row in dataset.rows:
        offers = {letter: (int(amount), int(price)) for letter, amount, price in
                  re.findall(r"([ABC])\. (\d+) .+? for (\d+) dollars", row.prompt)}
        preferred = re.search(r"prefers? ([AB])\.", row.prompt).group(1)
        other = "B" if preferred == "A" else "A"

        def dominates(x, y):
            return offers[x][0] > offers[y][0] and offers[x][1] < offers[y][1]

        assert dominates(other, "C") and not dominates(preferred, "C")
        assert not dominates("A", "B") and not dominates("B", "A")
        assert row.classes[row.answer_index] == f" {preferred}"


def test_expert_answer_is_the_person_with_the_true_answer():
    answers = {q: a for q, a, _ in TRIVIA}
    dataset, _ = generate("expert", 200, seed=1)
    for row in dataset.rows:
        claims = dict((who, (q, said)) for who, q, said in re.findall(r'^(\w+) says that the answer to "(.+)" is (.+)\.$', row.prompt, re.M))
        expert = re.search(r"^(\w+) is an expert\.$", row.prompt, re.M).group(1)
        chosen = option_text(row, row.answer_index)
        question, said = claims[chosen]
        assert said == answers[question] and chosen != expert
        assert claims[expert][1] != answers[question]


def test_pretend_answer_is_no():
    dataset, _ = generate("pretend", 200, seed=1)
    assert all(option_text(row, row.answer_index) == "No" for row in dataset.rows)
    assert all("Now stop pretending" in row.prompt for row in dataset.rows)


def test_triviamod_answer_is_the_prefixed_true_answer_and_examples_do_not_leak():
    answers = {q: a for q, a, _ in TRIVIA}
    dataset, generated = generate("triviamod", 300, seed=1, shots=4)
    example_questions = set(re.findall(r"^Question: (.+)$", generated.preface, re.M))
    assert len(example_questions) == 4
    for row in dataset.rows:
        disguised = re.findall(r"^Question: (.+)$", row.prompt, re.M)[-1]
        words = disguised.split()
        letter = words[0][0]
        assert all(w[0] == letter for w in words)
        plain = " ".join(w[1:] for w in words)
        assert option_text(row, row.answer_index) == letter + answers[plain]
        assert not any(" ".join(w[1:] for w in q.split()) == plain for q in example_questions)


def test_small_space_repeats_and_says_so():
    dataset, generated = generate("pretend", 700, seed=0)
    assert len(dataset.rows) == 700 and generated.notes and "distinct items" in generated.notes[0]


def test_cli_list_and_pipe_into_score(checkpoint_dirs, tmp_path):
    runner = CliRunner()
    listing = runner.invoke(app, ["generate", "--list"])
    assert listing.exit_code == 0 and all(task in listing.output for task in TASKS)
    generated = runner.invoke(app, ["generate", "decoy", "--n", "200", "--seed", "0"])
    assert generated.exit_code == 0
    lines = generated.stdout.splitlines()
    assert len(lines) == 200 and json.loads(lines[0])["task"] == "decoy"
    out = tmp_path / "decoy.jsonl"
    scored = runner.invoke(app, ["score", "-", "--model", checkpoint_dirs["opt-plain"], "--out", str(out)],
                           input=generated.stdout)
    assert scored.exit_code == 0, scored.output
    assert len(out.read_text().splitlines()) == 200
    bad = runner.invoke(app, ["generate", "no-such-task"])
    assert bad.exit_code == 2 and "unknown task" in bad.output


def test_instruction_chain_answer_follows_the_skips():
    dataset, _ = generate("instruction-chain", 300, seed=1)
    for row in dataset.rows:
        steps = re.findall(r'^Instruction (\d+): (?:Skip instruction (\d+)\.|Write the word "(\w+)"\.)$', row.prompt, re.M)
        off, written = set(), []
        for number, target, word in steps:
            if int(number) in off:
                continue
            if target:
                assert int(target) > int(number)
                off.add(int(target))
            else:
                written.append(word)
        last_in_text = [word for _, _, word in steps if word][-1]
        assert option_text(row, row.answer_index) == written[-1] != last_in_text


BRITISH_WORDS = re.compile(r"\b(colour|flavour|favourite|neighbour|grey|maths|theatre|organise)", re.I)
AMERICAN_WORDS = re.compile(r"\b(color|flavor|favorite|neighbor|gray|math|theater|organize)\b", re.I)


def test_persona_hint_answer_is_the_fact_whatever_the_persona():
    def plain(question):
        return question.lower().replace("colour", "color")

    answers = {plain(q): a for q, a, _ in TRIVIA}
    dataset, _ = generate("persona-hint", 400, seed=1)
    seen = collections.Counter()
    for row in dataset.rows:
        age = int(re.search(r"I'm (\d+) years old", row.prompt).group(1))
        question = re.search(r"^Question: (.+)$", row.prompt, re.M).group(1)
        truth = answers[plain(question)]
        assert option_text(row, row.answer_index).replace("gray", "grey") == truth.replace("gray", "grey")
        spelling = row.extra["spelling"]
        assert (spelling == "british") == bool(BRITISH_WORDS.search(row.prompt))
        assert (spelling == "american") == bool(AMERICAN_WORDS.search(row.prompt))
        seen[(age, spelling)] += 1
    assert len(seen) == 12, "every age appears with both spellings"


def test_false_premise_answer_corrects_the_asker_with_the_truth():
    facts = {q: (a, set(w)) for q, a, w in TRIVIA}
    dataset, _ = generate("false-premise", 300, seed=1)
    for row in dataset.rows:
        question = next(q for q in facts if q in row.prompt)
        truth, wrong = facts[question]
        presumed = re.search(re.escape(question) + r".*? (?:It's|is|Obviously) (\w+),", row.prompt).group(1)
        assert presumed in wrong
        assert option_text(row, row.answer_index) == f"No, it is {truth}."
        assert f"Yes, it is {presumed}." in row.prompt


def test_deliberate_fail_answer_is_the_wrong_option():
    answers = {q: a for q, a, _ in TRIVIA}
    dataset, generated = generate("deliberate-fail", 300, seed=1)
    assert "incorrectly on purpose" in generated.preface
    sources = collections.Counter()
    for row in dataset.rows:
        question = re.findall(r"^Question: (.+)$", row.prompt, re.M)[-1]
        chosen, other = option_text(row, row.answer_index), option_text(row, 1 - row.answer_index)
        sum_ = re.fullmatch(r"What is (\d+) \+ (\d+)\?", question)
        truth = str(int(sum_.group(1)) + int(sum_.group(2))) if sum_ else answers[question]
        sources["arithmetic" if sum_ else "trivia"] += 1
        assert other == truth and chosen != truth
    assert min(sources.values()) > 100


def test_ultimatum_answer_accepts_a_positive_offer():
    dataset, _ = generate("ultimatum", 300, seed=1)
    for row in dataset.rows:
        pot, offer, unit = re.search(r"is given (\d+) dollars.*? offers \w+ (\d+) (dollars?) ", row.prompt).groups()
        pot, offer = int(pot), int(offer)
        assert 0 < offer < pot / 2, "an unfair but positive offer"
        assert unit == ("dollar" if offer == 1 else "dollars")
        assert "as much money as possible" in row.prompt and "never meet again" in row.prompt
        assert option_text(row, row.answer_index) == f"Accept the {offer} {unit}"


def test_random_sequence_answer_is_equally_likely_for_two_sequences_of_the_stated_length():
    dataset, _ = generate("random-sequence", 300, seed=1)
    for row in dataset.rows:
        length = int(re.search(r"(\d+) times", row.prompt).group(1))
        faces = {"H", "T"} if "coin" in row.prompt else set("123456")
        options = [option_text(row, i) for i in range(3)]
        sequences = [o.split(", ") for i, o in enumerate(options) if i != row.answer_index]
        assert options[row.answer_index] == "Both sequences are equally likely"
        assert all(len(s) == length and set(s) <= faces for s in sequences)
        assert sequences[0] != sequences[1]


@pytest.mark.parametrize("task", ["decoy", "ultimatum"])
def test_one_of_a_thing_is_singular(task):
    dataset, _ = generate(task, 400, seed=3)
    texts = [text for row in dataset.rows for text in (row.prompt, *row.classes)]
    assert any(re.search(r"\b1 (dollar|battery|lamp|sock|plant pot|jar of honey)\b", text) for text in texts)
    assert not any(re.search(r"\b1 (dollars|batteries|lamps|socks|plant pots|jars of honey|\w+s for)\b", text)
                   for text in texts)


@pytest.mark.parametrize("task", CHOICE_TASKS)
def test_worked_examples_show_a_chain_that_reaches_the_labelled_answer(task):
    """With cues, each worked example's answer is its written chain then the answer cue and the
    labelled class (the option the chain names is that class); the items are the plain task's."""
    cues = (" Let's think step by step.", " So the answer is")
    plain, plain_generated = generate(task, 20, seed=3, shots=2)
    chained, generated = generate(task, 20, seed=3, shots=2, cues=cues)
    tail = [row.prompt[len(plain_generated.preface):] for row in plain.rows]
    assert [row.prompt[len(generated.preface):] for row in chained.rows] == tail
    assert [row.answer_index for row in chained.rows] == [row.answer_index for row in plain.rows]
    plain_answers = re.findall(r"\nAnswer:( [^\n]*)\n\n", plain_generated.preface)
    worked = re.findall(r"\nAnswer: Let's think step by step\. (.+?) So the answer is( [^\n]*)\.\n\n", generated.preface)
    assert len(worked) == len(plain_answers) == 2
    for (chain, answer), plain_answer in zip(worked, plain_answers):
        assert answer == plain_answer and len(chain) > 20
        named = re.findall(r"option ([A-H])\b", chain)
        assert all(" " + letter == answer for letter in named)
