"""Run a preface and packed tries through an unchanged HF causal LM.

The model's attention is switched to the tree attention for the runner's lifetime (and restored
on close), and so, on CPU, are its linear layers: float32 to oneDNN's matrix product, half
precision to float32 where the CPU has no half-precision products
(:mod:`invscale.kernels.cpu_linear`); the LM head is applied only to the hidden states that
predict answer tokens, by the fused Triton kernel (``kernels="triton"``) or its torch reference.
"""

from __future__ import annotations

import os

import torch

from invscale.kernels import cpu_linear
from invscale.kernels.fused_head import answer_logprobs_for
from invscale.scoring import architectures, attention, own_attention
from invscale.scoring.trie import Pack, push_passes, shared_segments


class PackRunner:
    """Computes answer-token log-probs for packs, reusing the keys and values of the preface and of
    the stack of shared prefixes above each pack (``push_tokens``: the most tokens one pass of a
    segment pushed on the stack takes; None, the whole segment)."""

    def __init__(self, model: torch.nn.Module, backend: str = "auto", kernels: str = "torch",
                 push_tokens: int | None = None):
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
        self.preface_hidden: torch.Tensor | None = None  # [P, d] final hidden states of the preface and stack
        self.n_prefix = 0
        self.push_tokens = push_tokens
        self.stack: list[tuple[int, ...]] = []  # the segments held above the preface
        self.stack_ends: list[int] = [0]  # cached tokens below each segment, then after the last
        self._restore_attention = own_attention.use_tree_attention(model)
        self._restore_linears = cpu_linear.route(self.body, linear_pack_budget(self.device))

    def close(self) -> None:
        """Restore the model's own attention implementation and linear layers, and drop the cached
        preface and stack."""
        self._restore_attention()
        self._restore_linears()
        self.prefix, self.n_prefix, self.preface_hidden = {}, 0, None
        self.stack, self.stack_ends = [], [0]

    def __enter__(self) -> "PackRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _forward(self, tokens: torch.Tensor, positions: torch.Tensor, context: attention.TreeContext) -> torch.Tensor:
        with attention.active(context):
            output = self.body(input_ids=tokens[None], position_ids=positions[None], use_cache=False)
        check_every_layer_attended(self.model.config, context)
        return output.last_hidden_state[0]  # [N, d]

    @torch.no_grad()
    def set_preface(self, tokens: list[int] | tuple[int, ...]) -> None:
        """Compute and keep every layer's keys and values for the shared preface tokens."""
        self.prefix, self.n_prefix, self.preface_hidden = {}, 0, None
        self.stack, self.stack_ends = [], [len(tokens)]
        if tokens:
            self._push(tuple(tokens))

    @torch.no_grad()
    def hold_stack(self, stack: tuple[tuple[int, ...], ...]) -> None:
        """Make the cached keys and values those of the preface then ``stack``'s segments: the leading
        segments already held are kept (compared by identity, then by value), the rest dropped and
        the missing ones computed, each in passes of at most ``push_tokens`` tokens. A segment's
        keys and values so depend only on the segments below it, never on what ran before."""
        held = self.stack
        keep = shared_segments(held, stack)
        if keep < len(held):
            self.n_prefix = length = self.stack_ends[keep]
            self.prefix = {layer: (key[:, :, :length], value[:, :, :length]) for layer, (key, value) in self.prefix.items()}
            self.preface_hidden = self.preface_hidden[:length] if length else None
            del held[keep:], self.stack_ends[keep + 1:]
        for segment in stack[keep:]:
            for piece in push_passes(segment, self.push_tokens):
                self._push(piece)
            held.append(segment)
            self.stack_ends.append(self.n_prefix)

    def _push(self, tokens: tuple[int, ...]) -> None:
        """Append ``tokens`` (a chain after what is cached) to the cached keys, values and final hidden states."""
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)
        context = attention.TreeContext.preface(len(tokens), self.device, self.prefix, self.n_prefix)
        hidden = self._forward(ids, context.positions, context)
        self.prefix = context.captured
        self.preface_hidden = hidden if self.preface_hidden is None else torch.cat([self.preface_hidden, hidden])
        self.n_prefix += len(tokens)

    @torch.no_grad()
    def pair_logprobs(self, pack: Pack, with_greedy: bool = False):
        """log p(pair_target | pair_node's context) for every answer pair of ``pack``: [T] fp32 on the
        model's device (and, with ``with_greedy``, [T] bool: whether each target is the argmax). On
        CUDA this returns before the GPU finishes, so the caller can prepare the next pack meanwhile."""
        self.hold_stack(pack.stack)
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


def check_every_layer_attended(config, context: attention.TreeContext) -> None:
    """Raise :class:`~invscale.scoring.architectures.UnsupportedModel` (one line) when fewer of the
    model's layers ran the tree attention in a pass than it has layers: some compute attention in
    their own code in the installed transformers (an older release than the trie was checked on),
    where the tree mask cannot reach them."""
    expected = config.get_text_config().num_hidden_layers
    if len(context.layers) < expected:
        raise architectures.UnsupportedModel(
            f"{config.model_type}: {expected - len(context.layers)} of its {expected} layers compute attention "
            f"outside transformers' attention interface in the installed transformers, so the trie cannot "
            f"score it exactly; score it with --path cache")


def answer_rows(hidden: torch.Tensor | None, preface_hidden: torch.Tensor | None, pack: Pack) -> torch.Tensor:
    """The final hidden states that predict each answer pair of ``pack``: pack nodes, or preface
    positions for negative pair nodes (counted from the preface's end)."""
    device = (hidden if hidden is not None else preface_hidden).device
    nodes = torch.from_numpy(pack.pair_node).to(device)
    if pack.pair_node.size and pack.pair_node.min() < 0:
        parts = [part for part in (preface_hidden, hidden) if part is not None]
        return torch.cat(parts)[nodes + (0 if preface_hidden is None else preface_hidden.shape[0])]
    return hidden[nodes]


STACK_MEMORY_SHARE = 0.25  # of the memory free when a run starts, for the keys and values on the stack
LINEAR_PACK_SHARE = 0.25  # of the memory free when a runner opens, for oneDNN's packed copies of the linear weights


def linear_pack_budget(device: torch.device) -> int:
    """Bytes a runner on ``device`` may spend on packed copies of the model's linear weights
    (:func:`invscale.kernels.cpu_linear.route`): a :data:`LINEAR_PACK_SHARE` of the host's free
    memory on the CPU, none elsewhere."""
    return int(LINEAR_PACK_SHARE * free_memory(device)) if device.type == "cpu" else 0


def stack_bytes_per_token(model: torch.nn.Module) -> int:
    """Bytes one token held on the stack takes: its keys and values in every layer and its final
    hidden state, in the model's dtype."""
    config = model.config
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    element = next(model.parameters()).element_size()
    return (layers * 2 * kv_heads * head_dim + config.hidden_size) * element


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device`` now: the GPU's free memory, or the host's available memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_stack_tokens(model: torch.nn.Module, streamed=None, memory_budget: int | None = None) -> int | None:
    """The most tokens a run holds on its stack of shared prefixes: a :data:`STACK_MEMORY_SHARE` of
    the memory free on the model's device, or, for a model streamed under ``memory_budget`` bytes,
    of what the budget leaves beside its resident weights and two layers (None, no limit, for a
    config that does not give its shape in the usual names, or a stand-in without weights that
    only plans)."""
    try:
        device, per_token = next(model.parameters()).device, stack_bytes_per_token(model)
    except (AttributeError, TypeError, ZeroDivisionError, StopIteration):
        return None
    if streamed is not None and memory_budget is not None:
        room = max(memory_budget - streamed.resident_bytes() - 2 * streamed.layer_bytes(), 0)
        return int(STACK_MEMORY_SHARE * room) // per_token
    return int(STACK_MEMORY_SHARE * free_memory(streamed.device if streamed is not None else device)) // per_token
