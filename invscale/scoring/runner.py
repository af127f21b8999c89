"""Run a preface and packed tries through an unchanged HF causal LM.

The model's attention is switched to the tree attention for the runner's lifetime (and restored
on close); the LM head is applied only to the hidden states that predict answer tokens, by the
fused Triton kernel (``kernels="triton"``) or its torch reference.
"""

from __future__ import annotations

import torch

from invscale.kernels.fused_head import answer_logprobs_for
from invscale.scoring import attention
from invscale.scoring import architectures
from invscale.scoring.trie import Pack


class PackRunner:
    """Computes answer-token log-probs for packs, reusing one preface's keys and values."""

    def __init__(self, model: torch.nn.Module, backend: str = "auto", kernels: str = "torch"):
        architectures.check_model_type(model.config)
        head = model.get_output_embeddings()
        self.head_weight, self.head_bias = head.weight, getattr(head, "bias", None)
        self.logit_transform = architectures.logit_transform(model.config)
        self.device = self.head_weight.device
        self.backend = attention.resolve_backend(backend, self.device, kernels)
        self.answer_logprobs = answer_logprobs_for(kernels)
        attention.register()
        self.model = model
        self.body = model.base_model
        self.prefix: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.preface_hidden: torch.Tensor | None = None  # [P, d] final hidden states of the preface
        self.n_prefix = 0
        self._previous_attention = model.config._attn_implementation
        model.set_attn_implementation(attention.ATTENTION_NAME)

    def close(self) -> None:
        """Restore the model's own attention implementation and drop the cached preface."""
        self.model.set_attn_implementation(self._previous_attention)
        self.prefix, self.n_prefix = {}, 0

    def __enter__(self) -> "PackRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _forward(self, tokens: torch.Tensor, positions: torch.Tensor, context: attention.TreeContext) -> torch.Tensor:
        with attention.active(context):
            output = self.body(input_ids=tokens[None], position_ids=positions[None], use_cache=False)
        return output.last_hidden_state[0]  # [N, d]

    @torch.no_grad()
    def set_preface(self, tokens: list[int] | tuple[int, ...]) -> None:
        """Compute and keep every layer's keys and values for the shared preface tokens."""
        self.prefix, self.n_prefix, self.preface_hidden = {}, len(tokens), None
        if not tokens:
            return
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)
        context = attention.TreeContext.preface(len(tokens), self.device)
        self.preface_hidden = self._forward(ids, context.positions, context)
        self.prefix = context.captured

    @torch.no_grad()
    def pair_logprobs(self, pack: Pack, with_greedy: bool = False):
        """log p(pair_target | pair_node's context) for every answer pair of ``pack``: [T] fp32 on the
        model's device (and, with ``with_greedy``, [T] bool: whether each target is the argmax). On
        CUDA this returns before the GPU finishes, so the caller can prepare the next pack meanwhile."""
        hidden = None
        if pack.n_tokens:  # a pack may hold only sequences that end inside the preface
            ids = torch.from_numpy(pack.tokens).to(self.device)
            positions = torch.from_numpy(pack.depth).to(self.device) + self.n_prefix
            context = attention.TreeContext(subtree_end=torch.from_numpy(pack.subtree_end).to(self.device),
                                            positions=positions, prefix=self.prefix, backend=self.backend)
            hidden = self._forward(ids, positions, context)
        targets = torch.from_numpy(pack.pair_target).to(self.device)
        return self.answer_logprobs(answer_rows(hidden, self.preface_hidden, pack), self.head_weight, targets,
                                    self.head_bias, self.logit_transform, with_greedy=with_greedy)


def answer_rows(hidden: torch.Tensor | None, preface_hidden: torch.Tensor | None, pack: Pack) -> torch.Tensor:
    """The final hidden states that predict each answer pair of ``pack``: pack nodes, or preface
    positions for negative pair nodes (counted from the preface's end)."""
    device = (hidden if hidden is not None else preface_hidden).device
    nodes = torch.from_numpy(pack.pair_node).to(device)
    if pack.pair_node.size and pack.pair_node.min() < 0:
        parts = [part for part in (preface_hidden, hidden) if part is not None]
        return torch.cat(parts)[nodes + (0 if preface_hidden is None else preface_hidden.shape[0])]
    return hidden[nodes]
