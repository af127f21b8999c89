"""Running the command line in-process, as the tests that check its output do."""

import json

from typer.testing import CliRunner

from invscale.cli import app

runner = CliRunner()


def run(*args, input=None):
    """``invscale ARGS`` (each argument turned into text), its result."""
    return runner.invoke(app, [str(a) for a in args], input=input)


def one_line(result) -> str:
    """The output of ``result`` with every run of whitespace one space (messages wrap in a narrow terminal)."""
    return " ".join(result.output.split())


def write_rows(path, records):
    """``records`` as a JSONL file at ``path``; the path."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path
