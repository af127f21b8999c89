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


def instruct_copy(checkpoint: str, folder):
    """A copy of ``checkpoint`` whose tokenizer has a chat template; (directory, loaded model)."""
    shutil.copytree(checkpoint, folder)
    loaded = load_model(str(folder), device="cpu")
    loaded.tokenizer.chat_template = TEMPLATE
    loaded.tokenizer.save_pretrained(folder)
    return folder, loaded


def test_prompts_in_the_chat_template_are_scored_exactly(checkpoint_dirs, tmp_path):
    model_dir, loaded = instruct_copy(checkpoint_dirs["llama-gqa2"], tmp_path / "instruct")
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


def test_a_sweep_scores_each_model_in_its_template_and_records_one_without(checkpoint_dirs, tmp_path):
    model_dir, _ = instruct_copy(checkpoint_dirs["llama-gqa3"], tmp_path / "instruct")
    data = tmp_path / "task.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in random_classification(83, n_rows=4)))
    result = runner.invoke(app, ["sweep", str(data), "--models", f"{model_dir},{checkpoint_dirs['opt-plain']}",
                                 "--device", "cpu", "--chat-template", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output  # one model could not be scored: said, and the exit code says so
    manifest = json.loads((tmp_path / "run" / "sweep.json").read_text())
    status = {m["name"]: m for m in manifest["models"]}
    assert manifest["chat_template"] and status[str(model_dir)]["status"] == "done"
    assert "no chat template" in status[checkpoint_dirs["opt-plain"]]["reason"]
