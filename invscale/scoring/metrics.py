"""Per-example metrics as the Inverse Scaling Prize pipeline defines them, plus lm-eval's acc_norm,
acc_bytes and brier_score.

classification (one log-prob per class, each the sum over the class's tokens):
    loss          = -log softmax(class_logprobs)[answer_index]
    predicted     = the class text with the highest log-prob (first on ties), as the pipeline writes it;
                    correct = its index is answer_index
    total_logprob = logsumexp(class_logprobs) (the probability mass on all classes)
    acc_norm      : argmax of class_logprob / len(class text in characters), as lm-eval does
                    (correct_norm per example)
    acc_bytes     : argmax of class_logprob / len(class text in UTF-8 bytes), as lm-eval does
                    (correct_bytes per example)
    brier_score   : sum over classes of (softmax(class_logprobs) - one-hot answer)^2, whose mean
                    over examples is lm-eval's brier_score
    acc_mutual_info (asked for): argmax of class_logprob - the class's log-prob after the
                    tokenizer's prefix token alone, as lm-eval does (correct_mutual_info per example)
    class_mean_token_logprobs: each class's log-prob over its token count (answer_mean_token_logprob:
                    the answer's; sequence_prob: mean_token_logprob)
logodds (two classes, scored after ``prompt`` and after ``other_prompt``), as the prize pipeline:
    logodds(p)    = logprob(classes[answer_index] | p) - logprob(other class | p),
                    i.e. logprob(c0) - logprob(c1) with the sign flipped when answer_index is 1
    logodds_difference = logodds(prompt) - logodds(other_prompt)  (also written as ``loss``)
    correct       = the class ``other_prompt`` makes most likely is classes[answer_index]
    total_logprob = logsumexp of all four class log-probs (both prompts' mass on the classes)
absolute_logodds: the same with logodds_difference = |logodds(prompt) - logodds(other_prompt)|
sequence_prob: loss = -sum of the completion's token log-probs
"""

from __future__ import annotations

import math

from invscale.data import Row, TaskType


RESULT_COLUMNS = {
    TaskType.classification: ["index", "loss", "correct", "predicted", "total_logprob", "class_logprobs",
                              "predicted_norm", "correct_norm", "correct_bytes", "brier_score",
                              "class_mean_token_logprobs", "answer_mean_token_logprob"],
    TaskType.logodds: ["index", "loss", "logodds_difference", "correct", "total_logprob", "logodds", "other_logodds",
                       "class_logprobs", "other_class_logprobs"],
    TaskType.absolute_logodds: ["index", "loss", "logodds_difference", "correct", "total_logprob", "logodds",
                                "other_logodds", "class_logprobs", "other_class_logprobs"],
    TaskType.sequence_prob: ["index", "loss", "logprob", "mean_token_logprob"],
    # sampled estimates and the anchoring loss of their triple (see invscale.numeric)
    TaskType.numeric: ["index", "loss", "estimate", "valid_samples", "samples", "parsed", "triple"],
}


MUTUAL_INFO_COLUMNS = ["correct_mutual_info"]  # classification, when the unconditional pass is asked for
# classification after a chain of thought the model wrote (see invscale.chain_of_thought)
CHAIN_COLUMNS = ["chain", "chain_tokens", "chain_stop", "wrote_cue", "predicted_by_text", "correct_by_text",
                 "chain_token_ids"]
# the column saying what was done to a row too long for the model, per --too-long choice
TOO_LONG_COLUMNS = {"error": [], "skip": ["skipped"], "truncate-left": ["truncated"]}


def result_columns(task_type: TaskType, extra_columns: list[str], too_long: str = "error",
                   mutual_info: bool = False, chains: bool = False) -> list[str]:
    """Columns of a results file: the metrics (prize columns first, acc_mutual_info's with
    ``mutual_info``, the chain of thought's with ``chains``), what was done to rows too long for the
    model (with ``too_long`` other than ``error``), then the data's extra columns."""
    metric_columns = (RESULT_COLUMNS[task_type] + (MUTUAL_INFO_COLUMNS if mutual_info else [])
                      + (CHAIN_COLUMNS if chains else []) + TOO_LONG_COLUMNS[too_long])
    return metric_columns + [c for c in extra_columns if c not in metric_columns]


def logsumexp(values: list[float]) -> float:
    """Stable log(sum(exp(values)))."""
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def classification_metrics(row: Row, class_logprobs: list[float], unconditional: dict[str, float] | None = None,
                           token_counts: list[int] | None = None) -> dict:
    """Prize columns plus per-class log-probs, acc_norm, acc_bytes and the Brier score for one
    classification row; with ``unconditional`` (each class's log-prob without the prompt),
    acc_mutual_info; with ``token_counts`` (each class's scored tokens), per-token means."""
    total = logsumexp(class_logprobs)
    predicted = _argmax(class_logprobs)
    per_char = [lp / len(text) for lp, text in zip(class_logprobs, row.classes)]
    predicted_norm = _argmax(per_char)
    per_byte = [lp / len(text.encode("utf-8")) for lp, text in zip(class_logprobs, row.classes)]
    brier = sum((math.exp(lp - total) - (number == row.answer_index)) ** 2 for number, lp in enumerate(class_logprobs))
    return {
        "index": row.index,
        "loss": total - class_logprobs[row.answer_index],
        "correct": predicted == row.answer_index,
        "predicted": row.classes[predicted],
        "total_logprob": total,
        "class_logprobs": class_logprobs,
        "predicted_norm": row.classes[predicted_norm],
        "correct_norm": predicted_norm == row.answer_index,
        "correct_bytes": _argmax(per_byte) == row.answer_index,
        "brier_score": brier,
        **({"correct_mutual_info": _argmax([lp - unconditional[text] for lp, text in zip(class_logprobs, row.classes)])
            == row.answer_index} if unconditional is not None else {}),
        **(_token_means(class_logprobs, token_counts, row.answer_index) if token_counts is not None else {}),
    }


def _token_means(class_logprobs: list[float], token_counts: list[int], answer_index: int) -> dict:
    means = [lp / count for lp, count in zip(class_logprobs, token_counts)]
    return {"class_mean_token_logprobs": means, "answer_mean_token_logprob": means[answer_index]}


def logodds_metrics(row: Row, logprobs: list[float], absolute: bool) -> dict:
    """Loss from the two prompts' log-odds; ``logprobs`` as ordered by ``continuations``."""
    sign = 1.0 if row.answer_index == 0 else -1.0
    logodds = sign * (logprobs[0] - logprobs[1])
    other_logodds = sign * (logprobs[2] - logprobs[3])
    difference = abs(logodds - other_logodds) if absolute else logodds - other_logodds
    other_predicted = _argmax(logprobs[2:])
    return {
        "index": row.index,
        "loss": difference,
        "logodds_difference": difference,
        "correct": other_predicted == row.answer_index,
        "total_logprob": logsumexp(logprobs),
        "logodds": logodds,
        "other_logodds": other_logodds,
        "class_logprobs": logprobs[:2],
        "other_class_logprobs": logprobs[2:],
    }


def sequence_prob_metrics(row: Row, logprobs: list[float], token_counts: list[int] | None = None) -> dict:
    """Summed negative log-likelihood of the completion (and its per-token mean, with ``token_counts``)."""
    return {"index": row.index, "loss": -logprobs[0], "logprob": logprobs[0],
            **({"mean_token_logprob": logprobs[0] / token_counts[0]} if token_counts is not None else {})}


def example_metrics(task_type: TaskType, row: Row, logprobs: list[float],
                    unconditional: dict[str, float] | None = None, token_counts: list[int] | None = None) -> dict:
    """Metrics for one row from its sequences' log-probs (and, for classification, the classes'
    ``unconditional`` log-probs when given; with ``token_counts``, per-token means), extra columns
    passed through."""
    if task_type is TaskType.classification:
        result = classification_metrics(row, logprobs, unconditional, token_counts)
    elif task_type is TaskType.sequence_prob:
        result = sequence_prob_metrics(row, logprobs, token_counts)
    else:
        result = logodds_metrics(row, logprobs, absolute=task_type is TaskType.absolute_logodds)
    for key, value in row.extra.items():
        result.setdefault(key, value)
    return result


def summarize(results: list[dict]) -> dict:
    """n, mean loss and (where defined) accuracy, acc_norm, acc_bytes and brier_score over per-example
    results (after chains of thought: their mean length, the share that wrote the answer cue and the
    accuracy of the class their text names, a row naming none counted wrong; numeric rows: the
    share of valid samples, and ``no_loss``, the rows whose triple has no loss); rows
    skipped as too long are counted apart (``skipped``) and left out of the rest, and rows scored
    truncated are counted (``truncated``)."""
    counts = {column: sum(column in r for r in results) for column in ("skipped", "truncated")}
    results = [r for r in results if "skipped" not in r]
    summary: dict = {"n": len(results), **{column: count for column, count in counts.items() if count}}
    if not results:
        return summary
    losses = scored_losses(results)
    missing = sum(r["loss"] is None for r in results)
    if missing:
        summary["no_loss"] = missing
    if losses:
        summary["mean_loss"] = sum(losses) / len(losses)
    if "estimate" in results[0]:
        summary["valid_samples"] = sum(r["valid_samples"] for r in results) / sum(len(r["parsed"]) for r in results)
    if "correct" in results[0]:
        summary["accuracy"] = sum(bool(r["correct"]) for r in results) / len(results)
    if "correct_norm" in results[0]:
        summary["acc_norm"] = sum(bool(r["correct_norm"]) for r in results) / len(results)
    if "correct_bytes" in results[0]:
        summary["acc_bytes"] = sum(bool(r["correct_bytes"]) for r in results) / len(results)
    if "brier_score" in results[0]:
        summary["brier_score"] = sum(r["brier_score"] for r in results) / len(results)
    if "correct_mutual_info" in results[0]:
        summary["acc_mutual_info"] = sum(bool(r["correct_mutual_info"]) for r in results) / len(results)
    for column in ("answer_mean_token_logprob", "mean_token_logprob"):
        if column in results[0]:
            summary["mean_token_logprob"] = sum(r[column] for r in results) / len(results)
    if "chain_tokens" in results[0]:
        summary["mean_chain_tokens"] = sum(r["chain_tokens"] for r in results) / len(results)
        summary["wrote_cue"] = sum(bool(r["wrote_cue"]) for r in results) / len(results)
        summary["accuracy_by_text"] = sum(r["correct_by_text"] is True for r in results) / len(results)
    return summary


def scored_losses(results: list[dict]) -> list[float]:
    """The losses a mean is taken over: each row's, or for numeric rows each triple's once (its
    three rows carry it); rows without a loss left out."""
    losses, triples = [], set()
    for result in results:
        if result["loss"] is None or result.get("triple") in triples:
            continue
        if "triple" in result:
            triples.add(result["triple"])
        losses.append(result["loss"])
    return losses


def chance_levels(dataset) -> dict:
    """Accuracy and loss of a uniform guess over each row's classes, averaged over the rows (none
    for rows without classes)."""
    sizes = [len(row.classes) for row in dataset.rows]
    if not all(sizes):
        return {}
    return {"chance_accuracy": sum(1 / k for k in sizes) / len(sizes),
            "chance_loss": sum(math.log(k) for k in sizes) / len(sizes)}


def seed_summary(per_seed: list[list[dict]]) -> dict:
    """:func:`summarize` over the results of every generator seed together, with 95% bootstrap
    intervals of accuracy and mean loss across seeds and items (``*_low``, ``*_high``)."""
    import numpy as np

    from invscale.bootstrap import grouped_bootstrap_ci

    summary = summarize([r for results in per_seed for r in results])
    # in row order, so the intervals do not depend on the order in which packs finished rows
    scored = [sorted((r for r in results if "skipped" not in r), key=lambda r: r["index"]) for results in per_seed]
    scored = [results for results in scored if results]
    losses = [np.array(scored_losses(results), float) for results in scored]
    if not scored:
        return summary
    if any(len(values) for values in losses):
        summary["loss_low"], summary["loss_high"] = grouped_bootstrap_ci([values for values in losses if len(values)])
    if "accuracy" in summary:
        summary["accuracy_low"], summary["accuracy_high"] = grouped_bootstrap_ci(
            [np.array([bool(r["correct"]) for r in results], float) for results in scored])
    return summary
