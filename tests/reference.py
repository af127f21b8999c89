"""The plain reference the scorer must equal: one full forward pass per (context + continuation),
full-vocabulary log-softmax, gather of the continuation's last-k tokens (the prize pipeline's way)."""

import math

import torch


@torch.no_grad()
def reference_logprob(model, tokenizer, context, continuation):
    """Sum of log p(continuation tokens) from one unpacked forward pass with the model's own attention."""
    ids = tokenizer(context + continuation)["input_ids"]
    k = len(tokenizer(continuation, add_special_tokens=False)["input_ids"])
    logits = model(torch.tensor([ids], device=model.device), use_cache=False).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(logprobs[i - 1, ids[i]].item() for i in range(len(ids) - k, len(ids)))


def reference_classification(class_logprobs, answer_index, classes):
    """Prize metrics computed independently with torch from per-class log-probs."""
    lp = torch.tensor(class_logprobs, dtype=torch.float64)
    normalised = torch.log_softmax(lp, dim=0)
    per_char = lp / torch.tensor([len(c) for c in classes], dtype=torch.float64)
    return {
        "loss": -normalised[answer_index].item(),
        "predicted": classes[int(torch.argmax(lp))],
        "correct": int(torch.argmax(lp)) == answer_index,
        "total_logprob": torch.logsumexp(lp, dim=0).item(),
        "correct_norm": int(torch.argmax(per_char)) == answer_index,
    }


def max_abs_diff(a, b):
    return max(abs(x - y) for x, y in zip(a, b)) if a else 0.0


def isclose(a, b, tol=1e-4):
    return math.isclose(a, b, abs_tol=tol)
