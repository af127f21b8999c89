"""invscale inside lm-evaluation-harness: ``--model invscale`` equals ``--model hf``.

Local tasks only (no hub): a multiple-choice task on a local JSONL file, zero-shot and few-shot,
and a local copy of lm-eval's own inverse-scaling task definition pointed at seed data. Every
sample's log-likelihoods (fp32, <= 1e-4), is_greedy, acc and acc_norm must match the HF backend.
"""

import json
import random
import shutil
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed (pip install -e '.[lm-eval]')")

from typer.testing import CliRunner  # noqa: E402

from conftest import seed_file  # noqa: E402
from invscale.cli import app  # noqa: E402
from invscale.data import read_dataset, write_dataset  # noqa: E402
from invscale.integrations.lm_eval import prize_task_yaml  # noqa: E402
from random_data import WORDS, random_classification  # noqa: E402

METRICS = ("acc", "acc_norm")


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """Three local tasks: random rows (zero-shot, and 2-shot from the same file), and 12 rows of
    the seed gambling file under a copy of lm-eval's inverse_scaling_mc task definition."""
    root = tmp_path_factory.mktemp("tasks")
    rows = random_classification(51, n_rows=10, duplicates=False)
    data = root / "random.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "local_mc.yaml").write_text(prize_task_yaml("invscale_local_mc", data, metrics=METRICS))
    few_shot = prize_task_yaml("invscale_local_mc_2shot", data, metrics=METRICS)
    (root / "local_mc_2shot.yaml").write_text(few_shot + "num_fewshot: 2\nfewshot_split: test\n")
    gambling = read_dataset(seed_file("gambling.csv"))
    gambling.rows = gambling.rows[:12]
    write_dataset(gambling, root / "gambling.jsonl")
    installed = Path(lm_eval.__file__).parent / "tasks" / "inverse_scaling" / "_inverse_scaling_mc_yaml"
    shutil.copy(installed, root / "_inverse_scaling_mc_yaml")
    (root / "inverse_scaling_local_gambling.yaml").write_text(
        "include: _inverse_scaling_mc_yaml\ntask: inverse_scaling_local_gambling\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    train: {root / 'gambling.jsonl'}\n")
    return root


@pytest.fixture(scope="module")
def task_manager(task_dir):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(task_dir))  # indexing lm-eval's own tasks takes a while: once


def evaluate(model, checkpoint, task_manager, task):
    from lm_eval import simple_evaluate

    import invscale.integrations.lm_eval  # noqa: F401  (registers the model)

    return simple_evaluate(model=model, model_args=f"pretrained={checkpoint},dtype=float32", device="cpu",
                           tasks=[task], batch_size=4, log_samples=True, task_manager=task_manager)


@pytest.mark.parametrize("checkpoint", ["opt-plain", "llama-gqa2"])
@pytest.mark.parametrize("task", ["invscale_local_mc", "invscale_local_mc_2shot", "inverse_scaling_local_gambling"])
def test_invscale_model_equals_the_hf_backend(checkpoint_dirs, task_manager, checkpoint, task):
    ours = evaluate("invscale", checkpoint_dirs[checkpoint], task_manager, task)
    theirs = evaluate("hf", checkpoint_dirs[checkpoint], task_manager, task)
    for metric in ("acc,none", "acc_norm,none"):
        assert ours["results"][task][metric] == theirs["results"][task][metric]
    our_samples = {s["doc_id"]: s for s in ours["samples"][task]}
    their_samples = {s["doc_id"]: s for s in theirs["samples"][task]}
    assert sorted(our_samples) == sorted(their_samples) and len(our_samples) >= 10
    for doc_id, sample in our_samples.items():
        for (logprob, greedy), (their_logprob, their_greedy) in zip(
                [r[0] for r in sample["resps"]], [r[0] for r in their_samples[doc_id]["resps"]]):
            assert abs(logprob - their_logprob) <= 1e-4 and greedy == their_greedy


def test_rolling_and_generation_work(checkpoint_dirs):
    from lm_eval.api.instance import Instance

    from invscale.integrations.lm_eval import InvscaleLM

    model = InvscaleLM(pretrained=checkpoint_dirs["llama-gqa2"], dtype="float32", device="cpu")
    rolling = model.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("the answer is question",), 0)],
                                          disable_tqdm=True)
    assert len(rolling) == 1 and rolling[0] < 0
    generated = model.generate_until([Instance("generate_until", {}, ("Question: the", {"max_gen_toks": 4}), 0)],
                                     disable_tqdm=True)
    assert len(generated) == 1 and isinstance(generated[0], str)
    empty_context = model.loglikelihood([Instance("loglikelihood", {}, ("", " the answer"), 0)], disable_tqdm=True)
    assert empty_context[0][0] < 0
    lone = Instance("loglikelihood", {}, ("Question: \ud83d", " the"), 0, metadata=("t", 3, 1))
    with pytest.raises(ValueError, match=r"request 0 \(t, doc 3\): context: not valid Unicode text"):
        model.loglikelihood([lone], disable_tqdm=True)


def test_invscale_lm_eval_command(checkpoint_dirs, task_dir):
    result = CliRunner().invoke(app, ["lm-eval", "--model", "invscale", "--model_args",
                                      f"pretrained={checkpoint_dirs['opt-plain']},dtype=float32", "--device", "cpu",
                                      "--tasks", "invscale_local_mc", "--include_path", str(task_dir)])
    assert result.exit_code == 0, result.output
    assert "invscale_local_mc" in result.output and "acc" in result.output


def test_a_model_the_trie_cannot_serve_takes_the_cache_path(tmp_path):
    """Mamba (state-space layers) through ``--model invscale``: its requests are scored by the model's
    own forward and cache, equal to lm-eval's HF backend; what is not a causal LM is refused before
    any work."""
    from conformance import build_tiny
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import CONFIG_MAPPING, AutoConfig, AutoModelForCausalLM

    from invscale.integrations.lm_eval import InvscaleLM
    from invscale.tiny import train_tokenizer

    tokenizer = train_tokenizer(tmp_path)
    build_tiny("mamba", tokenizer, seed=0).save_pretrained(tmp_path)
    requests = [Instance("loglikelihood", {}, (context, option), number)
                for context in ("Question: is the sky blue?\nAnswer:", "Question: two and two?\nAnswer:")
                for number, option in enumerate((" yes", " no", " four of them"))]
    ours = InvscaleLM(pretrained=str(tmp_path), dtype="float32", device="cpu").loglikelihood(requests)
    theirs = HFLM(pretrained=str(tmp_path), dtype="float32", device="cpu").loglikelihood(requests)
    assert max(abs(a[0] - b[0]) for a, b in zip(ours, theirs)) <= 1e-4
    assert [a[1] for a in ours] == [b[1] for b in theirs]

    bert = tmp_path / "bert"
    CONFIG_MAPPING["bert"](hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                           vocab_size=len(tokenizer), is_decoder=True).save_pretrained(bert)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(bert)).save_pretrained(bert)
    tokenizer.save_pretrained(bert)
    with pytest.raises(ValueError, match="bert: an encoder architecture"):
        InvscaleLM(pretrained=str(bert), dtype="float32", device="cpu")


def test_lm_eval_metrics_equal_lm_evals_own(checkpoint_dirs, tmp_path):
    """acc, acc_norm, acc_bytes, acc_mutual_info and brier_score of ``invscale score`` against
    lm-eval's HF backend on one local task: accuracies exactly, the Brier score within what the
    log-prob tolerance allows."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from invscale.results import read_results
    from invscale.scoring.metrics import summarize

    rng = random.Random(58)
    records = [{"prompt": f"Question {number}: {' '.join(rng.sample(WORDS, 6))}\nAnswer:",  # three classes each,
                "classes": [" " + "é" * rng.randrange(3) + word for word in rng.sample(WORDS, 3)],  # bytes ≠ characters
                "answer_index": rng.randrange(3)} for number in range(24)]
    data = tmp_path / "metrics.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    (tmp_path / "metrics.yaml").write_text(prize_task_yaml("invscale_metrics", data,
                                                           metrics=("acc", "acc_norm", "acc_bytes", "acc_mutual_info",
                                                                    "brier_score")))
    checkpoint = checkpoint_dirs["llama-gqa2"]
    theirs = simple_evaluate(model="hf", model_args=f"pretrained={checkpoint},dtype=float32", device="cpu",
                             tasks=["invscale_metrics"], batch_size=4,
                             task_manager=TaskManager(include_path=str(tmp_path)))["results"]["invscale_metrics"]
    result = CliRunner().invoke(app, ["score", str(data), "--model", checkpoint, "--mutual-info",
                                      "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 0, result.output
    ours = summarize(read_results(tmp_path / "o.jsonl"))
    for name, their_name in (("accuracy", "acc"), ("acc_norm", "acc_norm"), ("acc_bytes", "acc_bytes"),
                             ("acc_mutual_info", "acc_mutual_info")):
        assert abs(ours[name] - theirs[f"{their_name},none"]) <= 1e-6
    assert abs(ours["brier_score"] - theirs["brier_score,none"]) <= 1e-4
    logodds = tmp_path / "logodds.jsonl"
    logodds.write_text(json.dumps({"prompt": "Q", "other_prompt": "R", "classes": [" a", " b"], "answer_index": 0}) + "\n")
    refused = CliRunner().invoke(app, ["score", str(logodds), "--model", checkpoint, "--mutual-info",
                                       "--out", str(tmp_path / "l.jsonl")])
    assert refused.exit_code == 2 and "acc_mutual_info is for classification rows" in " ".join(refused.output.split())


def test_generate_until_equals_the_hf_backend(checkpoint_dirs):
    """Greedy generate_until requests (a shared few-shot preface, ragged questions, stop sequences
    that end some of them early, a second group of settings) give the HF backend's texts; sampled
    requests give the same texts at every batch size."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from invscale.integrations.lm_eval import InvscaleLM

    checkpoint = checkpoint_dirs["llama-gqa2"]
    shots = "Question: the water is what?\nAnswer: the sea\n\nQuestion: one or two?\nAnswer: two\n\n"
    questions = ["the", "world the house number", "a b c d e f g", "what time", "Answer two", "sea"]
    requests = [Instance("generate_until", {}, (f"{shots}Question: {q}\nAnswer:", {"until": ["\n\n", "e"],
                                                                                     "max_gen_toks": 12}), n)
                for n, q in enumerate(questions)]
    requests += [Instance("generate_until", {}, (f"{shots}Question: {q}?", {"until": ["Q"], "max_gen_toks": 6}), 9)
                 for q in questions[:3]]
    ours = InvscaleLM(pretrained=checkpoint, dtype="float32", device="cpu", generation_batch_size=4)
    theirs = HFLM(pretrained=checkpoint, dtype="float32", device="cpu", batch_size=1)
    expected = theirs.generate_until(requests, disable_tqdm=True)
    assert ours.generate_until(requests, disable_tqdm=True) == expected
    assert any(len(text) < 6 for text in expected)  # some stopped early
    sampled = [Instance("generate_until", {}, (r.args[0], {"do_sample": True, "temperature": 0.9, "max_gen_toks": 8}),
                        n) for n, r in enumerate(requests[:6])]
    first = ours.generate_until(sampled, disable_tqdm=True)
    ours.generation_batch_size = 1
    assert ours.generate_until(sampled, disable_tqdm=True) == first
    with pytest.raises(ValueError, match="does not take num_beams"):
        ours.generate_until([Instance("generate_until", {}, ("a", {"num_beams": 2}), 0)], disable_tqdm=True)
