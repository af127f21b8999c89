"""--chat-template: each prompt in the model's chat template, scored exactly; refused without one."""

import json
import shutil

from typer.testing import CliRunner

from invscale.cli import app
from invscale.models import load_model
from invscale.results import read_results
from invscale.scoring.chat import chat_prompt
from random_data import random_classification
from reference import isclose, reference_logprob

runner = CliRunner()
TEMPLATE = ("{{ bos_token }}{% for message in messages %}<|user|>\n{{ message['content'] }}<|end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def test_prompts_in_the_chat_template_are_scored_exactly(checkpoint_dirs, tmp_path):
    model_dir = tmp_path / "instruct"
    shutil.copytree(checkpoint_dirs["llama-gqa2"], model_dir)
    loaded = load_model(str(model_dir), device="cpu")
    loaded.tokenizer.chat_template = TEMPLATE
    loaded.tokenizer.save_pretrained(model_dir)
    records = random_classification(81, n_rows=6, duplicates=False)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(data), "--model", str(model_dir), "--device", "cpu", "--chat-template",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    tokenizer = load_model(str(model_dir), device="cpu").tokenizer
    wrapped = chat_prompt(tokenizer, records[0]["prompt"])
    assert wrapped.startswith("<|user|>\n") and wrapped.endswith("<|end|>\n<|assistant|>\n")
    ids = tokenizer(wrapped)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1  # the template's BOS is not doubled by the tokenizer's
    for record, row in zip(records, sorted(read_results(out), key=lambda r: r["index"])):
        expected = [reference_logprob(loaded.model, tokenizer, chat_prompt(tokenizer, record["prompt"]), option)
                    for option in record["classes"]]
        assert all(isclose(a, b) for a, b in zip(row["class_logprobs"], expected))
    assert json.loads((tmp_path / "out.jsonl.meta.json").read_text())["chat_template"] == "applied"


def test_a_model_without_a_chat_template_is_refused_in_one_line(checkpoint_dirs, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in random_classification(82, n_rows=2)))
    result = runner.invoke(app, ["score", str(data), "--model", checkpoint_dirs["opt-plain"], "--device", "cpu",
                                 "--chat-template", "--out", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 2 and "--chat-template: the model's tokenizer has no chat template" in result.output
    assert not (tmp_path / "out.jsonl").exists()
