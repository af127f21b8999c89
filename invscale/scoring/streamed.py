"""Layer-streamed scoring: models bigger than the device, one decoder layer resident at a time.

Scoring is forward-only over a fixed dataset, so the model need not be resident. The embeddings,
final norm and LM head stay on the device; decoder layers are read one at a time from the
checkpoint's safetensors shards (memory-mapped: never the whole model in host memory), and every
pack of a group (the whole dataset when it fits) goes through layer i while layer i+1 is read
(a reader thread; on CUDA the copy runs from pinned memory on a side stream), so weights cross to
the device once per group instead of once per batch, overlapped with compute.

The HF model's own code runs every step: a skeleton built on the meta device supplies the
modules; the embedding stage is the model's forward stopped at its first layer (which also yields
the exact keyword arguments each layer receives: position ids, rotary embeddings, the tree), and
the final stage is the model's forward with the layer stack replaced by the finished hidden states.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from invscale.kernels import cpu_linear
from invscale.kernels.fused_head import answer_logprobs_for
from invscale.scoring import attention, own_attention
from invscale.scoring import architectures
from invscale.scoring.checkpoint import CheckpointTensors
from invscale.scoring.runner import answer_rows
from invscale.scoring.trie import Pack, push_passes, shared_segments


class _Stop(Exception):
    """Raised by the last :class:`_Capture` to end a forward pass before it leaves the layer stack."""


class _Capture(nn.Module):
    """Stands in for one decoder layer: records its inputs (each layer may get its own, e.g. Gemma3's
    local and global rotary embeddings) and hands the hidden states on unchanged; the last one
    stops the pass."""

    def __init__(self, last: bool):
        super().__init__()
        self.last = last

    def forward(self, hidden_states, *args, **kwargs):
        self.inputs = (hidden_states, kwargs)
        if self.last:
            raise _Stop
        return hidden_states


class _Emit(nn.Module):
    """Stands in for the layer stack: hands back hidden states computed layer by layer (as a
    one-element tuple with ``as_tuple``, for a model whose loop reads its layers' outputs as
    tuples, e.g. BLOOM's ``outputs[0]``)."""

    def __init__(self, hidden: torch.Tensor, as_tuple: bool = False):
        super().__init__()
        self.hidden, self.as_tuple = hidden, as_tuple

    def forward(self, hidden_states, *args, **kwargs):
        return (self.hidden,) if self.as_tuple else self.hidden


@dataclass
class StreamTimes:
    """Seconds spent reading layers onto the device vs computing, layers streamed and tokens run
    through them, summed over the run."""

    load: float = 0.0
    compute: float = 0.0
    layers: int = 0
    tokens: int = 0


class StreamedModel:
    """A causal LM whose decoder layers live in the checkpoint until each one is needed."""

    def __init__(self, directory: str | Path, dtype: torch.dtype, device: torch.device, keep_in_host: bool = False):
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModelForCausalLM

        self.dtype, self.device = dtype, torch.device(device)
        self.checkpoint = CheckpointTensors(directory)
        # with keep_in_host, each layer read from the checkpoint stays in host memory (pinned on
        # CUDA) so later groups of packs copy it from there instead of reading the shards again
        self.host_copies: dict[str, torch.Tensor] | None = {} if keep_in_host else None
        self._loads_when_called = False  # see load_layers_when_called
        config = AutoConfig.from_pretrained(directory)
        with init_empty_weights():
            self.model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
        self.body = self.model.base_model
        self._stack_owner, self._stack_attr, self.layers = self._find_layer_stack()
        prefix = self._stack_prefix
        head = self.model.get_output_embeddings()
        head_name = next(name for name, parameter in self.model.named_parameters() if parameter is head.weight)
        # tied as a resident load ties it: to the input embeddings unless the checkpoint holds a head
        tied = getattr(config, "tie_word_embeddings", False) and head_name not in self.checkpoint
        for name, parameter in self.model.named_parameters():
            if name.startswith(prefix) or (tied and name == head_name):
                continue
            self._load(name)
        for name, buffer in self.model.named_buffers():
            self._set(name, buffer)
        if tied:
            head.weight = self.model.get_input_embeddings().weight
        missing = [n for n, p in self.model.named_parameters() if p.is_meta and not n.startswith(prefix)]
        if missing:
            raise ValueError(f"{directory}: checkpoint lacks {', '.join(missing[:3])}")

    def _find_layer_stack(self):
        count = self.model.config.num_hidden_layers
        for name, module in self.model.named_modules():
            if isinstance(module, nn.ModuleList) and len(module) == count:
                owner_name, _, attr = name.rpartition(".")
                self._stack_prefix = name + "."
                return self.model.get_submodule(owner_name), attr, module
        raise ValueError("no decoder layer stack found in this model")

    def _set(self, name: str, value: torch.Tensor | None) -> None:
        """Install ``value`` as parameter or buffer ``name`` on the run's device, or free it back to
        the meta device when ``value`` is None. Floating-point parameters take the run's dtype;
        buffers keep the skeleton's (as a resident load leaves them, e.g. fp32 rotary frequencies).
        Assigned directly: a generic setter that empties the device's allocator cache per tensor
        would make every layer's weights a fresh device allocation."""
        owner_name, _, attr = name.rpartition(".")
        owner = self.model.get_submodule(owner_name)
        current = getattr(owner, attr)
        if value is None:
            value = torch.empty_like(current, device="meta")
        elif value.shape != current.shape:
            raise ValueError(f"{self.checkpoint.directory}: tensor {name} has shape {tuple(value.shape)}, "
                             f"the config gives {tuple(current.shape)}")
        else:
            value = value.to(self.device, current.dtype if value.is_floating_point() else value.dtype)
        if attr in owner._buffers:
            owner._buffers[attr] = value
        else:
            owner._parameters[attr] = nn.Parameter(value, requires_grad=False)

    def _read(self, name: str) -> torch.Tensor:
        """Tensor ``name`` from the checkpoint, in the run's dtype if it is floating point."""
        if name not in self.checkpoint:
            raise ValueError(f"{self.checkpoint.directory}: checkpoint has no tensor {name}")
        tensor = self.checkpoint.get(name)
        return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

    def _load(self, name: str) -> None:
        self._set(name, self._read(name))

    def layer_names(self, index: int) -> list[str]:
        """Parameter names of decoder layer ``index``."""
        return [f"{self._stack_prefix}{index}.{name}" for name, _ in self.layers[index].named_parameters()]

    def read_layer(self, index: int) -> tuple[dict[str, torch.Tensor], object]:
        """Layer ``index``'s tensors read from the checkpoint and copied to the device in the run's
        dtype, without installing them (safe to call from a prefetch thread). On CUDA the copy
        runs from pinned memory on a side stream; the returned event marks its end (else None)."""
        host = {name: self._host_tensor(name) for name in self.layer_names(index)}
        if self.device.type != "cuda":
            return {name: tensor.clone() for name, tensor in host.items()}, None
        if not hasattr(self, "_copy_stream"):
            self._copy_stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            on_device = {name: tensor.pin_memory().to(self.device, non_blocking=True) for name, tensor in host.items()}
            done = torch.cuda.Event()
            done.record(self._copy_stream)
        return on_device, done

    def _host_tensor(self, name: str) -> torch.Tensor:
        if self.host_copies is not None and name in self.host_copies:
            return self.host_copies[name]
        tensor = self._read(name)
        if self.host_copies is not None:
            tensor = tensor.pin_memory() if self.device.type == "cuda" else tensor.clone()
            self.host_copies[name] = tensor
        return tensor

    def install_layer(self, tensors: dict[str, torch.Tensor], done) -> None:
        """Make tensors from :meth:`read_layer` the layer's weights (waiting for their copy)."""
        if done is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(done)
            for tensor in tensors.values():
                tensor.record_stream(stream)
        for name, tensor in tensors.items():
            self._set(name, tensor)

    def drop_layer(self, index: int) -> None:
        """Free layer ``index``'s weights (back to the meta device)."""
        for name in self.layer_names(index):
            self._set(name, None)

    def load_layers_when_called(self) -> None:
        """Make each decoder layer read its weights just before it runs and free them once it has
        run, so the model's own forward (the cache path's) holds one layer's weights at a time,
        read again on every forward (from host memory when kept there, else from the shards)."""
        if self._loads_when_called:
            return
        for index, layer in enumerate(self.layers):
            layer.register_forward_pre_hook(lambda module, args, index=index: self.install_layer(*self.read_layer(index)))
            layer.register_forward_hook(lambda module, args, output, index=index: self.drop_layer(index))
        self._loads_when_called = True

    def layer_bytes(self) -> int:
        """Bytes of the largest decoder layer in the run's dtype."""
        size = torch.finfo(self.dtype).bits // 8
        return max(sum(p.numel() for p in layer.parameters()) for layer in self.layers) * size

    def resident_bytes(self) -> int:
        """Bytes of what stays on the device: everything but the decoder layers."""
        return sum(p.numel() * p.element_size() for n, p in self.model.named_parameters()
                   if not n.startswith(self._stack_prefix))

    def with_stack(self, *replacement: nn.Module):
        """Context manager: the layer stack temporarily replaced by the modules ``replacement``."""
        owner, attr, original = self._stack_owner, self._stack_attr, self.layers

        class _Swap:
            def __enter__(self_inner):
                setattr(owner, attr, nn.ModuleList(replacement))

            def __exit__(self_inner, *exc):
                setattr(owner, attr, original)

        return _Swap()


class StreamedRunner:
    """Answer-token log-probs for a group of packs, streaming the decoder layers once.

    The keys and values of the preface and of the stack of shared prefixes above the last pack run
    are kept (every layer's) from one group to the next, as :class:`PackRunner` keeps them from one
    pack to the next; within a group, each segment the packs' stacks push is one more item through
    every layer (in passes of at most ``push_tokens`` tokens, as the resident runner pushes it),
    whose keys and values the items above it read in that layer and which is dropped once the
    layer is done, unless the group's last pack still stands on it."""

    def __init__(self, streamed: StreamedModel, backend: str = "auto", kernels: str = "torch",
                 on_layer: Callable[[int, int], None] | None = None, push_tokens: int | None = None):
        architectures.check_model_type(streamed.model.config)
        self.streamed = streamed
        self.logit_transform = architectures.logit_transform(streamed.model.config)
        self.backend = attention.resolve_backend(backend, streamed.device, kernels)
        self.answer_logprobs = answer_logprobs_for(kernels)
        self.on_layer = on_layer
        self.push_tokens = push_tokens
        self.times = StreamTimes()
        self.captured: dict = {}  # keys and values per layer of the preface and the held stack, kept across groups
        self.preface_hidden: torch.Tensor | None = None  # and their final hidden states
        self.held: tuple[tuple[int, ...], ...] | None = None  # the segments held above the preface; None: nothing yet
        self.held_ends: list[int] = []  # cached tokens after the preface and after each held segment
        self.peak_bytes = 0  # largest sum of weights, cached keys and values and hidden states held at once
        self.emit_tuple = False  # whether the decoder layers return tuples (their loop reads ``outputs[0]``)
        attention.register()
        own_attention.use_tree_attention(streamed.model)  # the streamed model serves this runner alone

    def _embed(self, tokens: torch.Tensor, positions: torch.Tensor, context: attention.TreeContext):
        """(hidden states entering the first layer, the keyword arguments of every layer)."""
        n_layers = len(self.streamed.layers)
        captures = [_Capture(last=i == n_layers - 1) for i in range(n_layers)]
        with self.streamed.with_stack(*captures):
            try:
                with attention.active(context):
                    self.streamed.body(input_ids=tokens[None], position_ids=positions[None], use_cache=False)
            except _Stop:
                return captures[0].inputs[0], [capture.inputs[1] for capture in captures]
        raise RuntimeError("the model never reached its last decoder layer")

    def _finish(self, hidden: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor,
                context: attention.TreeContext) -> torch.Tensor:
        with self.streamed.with_stack(_Emit(hidden, self.emit_tuple)), attention.active(context):
            output = self.streamed.body(input_ids=tokens[None], position_ids=positions[None], use_cache=False)
        return output.last_hidden_state[0]

    def _plan_items(self, preface: tuple[int, ...], packs: list[Pack]):
        """The group's items in the order every layer runs them, (tokens, positions, context) each:
        the preface (first group only), each segment pass pushed, each pack that has nodes; and,
        per pack, the items whose final hidden states follow the held ones on its path (with how
        many held ones it keeps), then the same for the group's last stack."""
        device = self.streamed.device
        items, paths = [], []
        path = []  # (item, its keys and values, tokens they cover) of each pass above the held tokens
        if self.held is None:  # the preface is the bottom of every path, computed once per run
            self.held, self.held_ends = (), [len(preface)]
            if preface:
                context = attention.TreeContext.preface(len(preface), device)
                items.append((torch.tensor(preface, device=device), context.positions, context))
                path.append((0, context.captured, len(preface)))
        cached, current, kept = self.held_ends, list(self.held), len(self.held)
        segment_passes = [len(path)]  # where each segment above the ``kept`` held ones starts in ``path``
        for pack in packs:
            keep = shared_segments(current, pack.stack)
            if keep < len(current):
                if keep < kept:  # down into the held stack (the preface was held): nothing pushed stays
                    kept, path, segment_passes = keep, [], [0]
                else:
                    del path[segment_passes[keep - kept]:], segment_passes[keep - kept + 1:]
                del current[keep:]
            for segment in pack.stack[keep:]:
                for chunk in push_passes(segment, self.push_tokens):
                    below, length = self._top(path, cached[kept])
                    context = attention.TreeContext.preface(len(chunk), device, _Prefix(below, length), length)
                    items.append((torch.tensor(chunk, device=device), context.positions, context))
                    path.append((len(items) - 1, context.captured, length + len(chunk)))
                current.append(segment)
                segment_passes.append(len(path))
            below, length = self._top(path, cached[kept])
            number = None
            if pack.n_tokens:  # a pack may hold only sequences that end inside the preface and stack
                positions = torch.from_numpy(pack.depth).to(device) + length
                context = attention.TreeContext(subtree_end=torch.from_numpy(pack.subtree_end).to(device),
                                                positions=positions, prefix=_Prefix(below, length),
                                                backend=self.backend)
                items.append((torch.from_numpy(pack.tokens).to(device), positions, context))
                number = len(items) - 1
            paths.append((kept, [item for item, _, _ in path], number))
        return items, paths, (tuple(current), kept, path)

    def _top(self, path: list, held_tokens: int) -> tuple[dict, int]:
        """The keys and values the next item attends to, and how many tokens they cover."""
        if path:
            return path[-1][1], path[-1][2]
        return self.captured, held_tokens

    @torch.no_grad()
    def run(self, preface: tuple[int, ...], packs: list[Pack]) -> list[torch.Tensor]:
        """[T] fp32 log-probs per pack (as :meth:`PackRunner.pair_logprobs` gives), all packs at once."""
        device = self.streamed.device
        items, paths, (last_stack, last_kept, last_path) = self._plan_items(preface, packs)
        kept_cache = last_path[-1][1] if last_path else self.captured  # what the next group stands on
        passing = [context.captured for _, _, context in items
                   if context.captured is not None and context.captured is not kept_cache]
        if kept_cache is not self.captured:
            passing.append(self.captured)
        states = [(*self._embed(*item), item[2]) for item in items]  # (hidden, kwargs per layer, context)
        hidden = [state[0] for state in states]
        self.times.tokens += sum(len(tokens) for tokens, _, _ in items)
        n_layers = len(self.streamed.layers)
        with ThreadPoolExecutor(max_workers=1) as reader:  # reads layer i+1 while layer i computes
            upcoming = reader.submit(self.streamed.read_layer, 0)
            for index in range(n_layers):
                began = time.perf_counter()
                self.streamed.install_layer(*upcoming.result())
                if index + 1 < n_layers:
                    upcoming = reader.submit(self.streamed.read_layer, index + 1)
                self._synchronize()
                loaded = time.perf_counter()
                self._compute_layer(index, states, hidden, prefetching=index + 1 < n_layers)
                for cache in passing:  # read by this layer's items only
                    cache.pop(index, None)
                self.times.load += loaded - began
                self.times.compute += time.perf_counter() - loaded
                self.times.layers += 1
                if self.on_layer is not None:
                    self.on_layer(index, n_layers)
        finals = [self._finish(h, *item) for h, item in zip(hidden, items)]
        head = self.streamed.model.get_output_embeddings()
        results = []
        for pack, (kept, pushed, number) in zip(packs, paths):
            targets = torch.from_numpy(pack.pair_target).to(device)
            rows = answer_rows(None if number is None else finals[number], self._path_hidden(kept, pushed, finals), pack)
            results.append(self.answer_logprobs(rows, head.weight, targets, getattr(head, "bias", None),
                                                self.logit_transform))
        self.preface_hidden = self._path_hidden(last_kept, [item for item, _, _ in last_path], finals)
        length = last_path[-1][2] if last_path else self.held_ends[last_kept]
        self.captured = dict(_Prefix(kept_cache, length).items())
        self.held_ends = list(accumulate(map(len, last_stack), initial=self.held_ends[0]))
        self.held = last_stack
        return results

    def _path_hidden(self, kept: int, pushed: list[int], finals: list[torch.Tensor]) -> torch.Tensor | None:
        """The final hidden states of a path: those held below its ``kept`` held segments, then the
        ``pushed`` items' (None when the path is empty)."""
        parts = [] if self.preface_hidden is None else [self.preface_hidden[:self.held_ends[kept]]]
        parts += [finals[item] for item in pushed]
        return torch.cat(parts) if parts else None

    def _compute_layer(self, index: int, states: list, hidden: list[torch.Tensor], prefetching: bool) -> None:
        """Every item of the group through layer ``index`` (installed), which is then freed."""
        layer = self.streamed.layers[index]
        with cpu_linear.routed(layer):
            for k, (_, kwargs, context) in enumerate(states):
                with attention.active(context):
                    out = layer(hidden[k], **kwargs[index])
                self.emit_tuple = isinstance(out, tuple)
                hidden[k] = out[0] if self.emit_tuple else out
        self._synchronize()
        in_flight = self.streamed.layer_bytes() if prefetching else 0
        contexts = [context for _, _, context in states]
        self.peak_bytes = max(self.peak_bytes, self._held_bytes(hidden, contexts) + in_flight)
        self.streamed.drop_layer(index)

    def _held_bytes(self, hidden: list[torch.Tensor], contexts: list[attention.TreeContext]) -> int:
        weights = sum(p.numel() * p.element_size() for p in self.streamed.model.parameters() if not p.is_meta)
        caches = {id(c.captured): c.captured for c in contexts if c.captured is not None} | {0: self.captured}
        cache = sum(t.nbytes for captured in caches.values() for pair in captured.values() for t in pair)
        masks = sum(context.mask_bytes() for context in contexts)
        return weights + cache + masks + sum(h.nbytes for h in hidden)

    def _synchronize(self) -> None:
        """Wait for the compute stream only (the next layer's copy on the side stream runs on)."""
        if self.streamed.device.type == "cuda":
            torch.cuda.current_stream(self.streamed.device).synchronize()


class _Prefix(Mapping):
    """The first ``length`` cached keys and values of ``source`` per layer, read when the layer runs
    (``source`` fills layer by layer as the items below compute it)."""

    def __init__(self, source: dict, length: int):
        self.source, self.length = source, length

    def __getitem__(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        key, value = self.source[layer]
        return key[:, :, :self.length], value[:, :, :self.length]

    def __iter__(self):
        return iter(self.source)

    def __len__(self) -> int:
        return len(self.source)


class StreamBudgetError(ValueError):
    """The memory budget cannot hold two layers, the preface's KV and one pack."""


def plan_groups(streamed: StreamedModel, preface_tokens: int, pack_sizes: list[int], budget: int | None,
                backend: str = "sdpa", stacks: list[tuple[tuple[int, ...], ...]] | None = None,
                push_tokens: int | None = None) -> list[list[int]]:
    """Pack indexes grouped so that each group's hidden states and attention masks (those of the
    segments its packs push on the stack, ``stacks[i]`` being pack ``i``'s, in passes of at most
    ``push_tokens``, included) fit ``budget`` bytes beside the resident weights, two layers (one
    computing, one read ahead), the keys and values of the preface and the deepest stack, and one
    pack's working memory (all packs in one group when there is no budget). Attention memory
    follows ``backend`` (see :func:`attention.attention_memory`; segments are pushed causally, as
    ``sdpa``). Raises :class:`StreamBudgetError`."""
    if budget is None or not pack_sizes:
        return [list(range(len(pack_sizes)))]
    config = streamed.model.config
    size = torch.finfo(streamed.dtype).bits // 8
    hidden = config.hidden_size
    heads = config.num_attention_heads
    kv_dim = getattr(config, "num_key_value_heads", heads) * (getattr(config, "head_dim", None) or hidden // heads)
    ffn = getattr(config, "ffn_dim", None) or getattr(config, "intermediate_size", 4 * hidden)
    stacks = stacks or [()] * len(pack_sizes)
    keys = preface_tokens + max(sum(map(len, stack)) for stack in stacks)  # cached below any item
    layer_cache = 2 * keys * kv_dim * size
    cache = len(streamed.layers) * layer_cache
    pushes, previous = [], ()
    for stack in stacks:
        pushes.append([len(piece) for segment in stack[shared_segments(previous, stack):]
                       for piece in push_passes(segment, push_tokens)])
        previous = stack

    def attention_bytes(n: int, kind: str = backend) -> tuple[int, int]:
        return attention.attention_memory(kind, streamed.device, n, keys + n, heads)

    def working(n: int, kind: str = backend) -> int:  # one item through one layer
        return n * (4 * hidden + 2 * ffn) * size + attention_bytes(n, kind)[1]

    def held(index: int) -> int:  # kept for the whole group: hidden states and masks, a pushed pass's cache a layer
        n = pack_sizes[index]
        pushed = sum(2 * c * hidden * size + attention_bytes(c, "sdpa")[0] + layer_cache for c in pushes[index])
        return 2 * n * hidden * size + attention_bytes(n)[0] + pushed

    largest = max(pack_sizes)
    widest = max(working(largest), max((working(c, "sdpa") for chunks in pushes for c in chunks), default=0))
    fixed = streamed.resident_bytes() + 2 * streamed.layer_bytes() + cache + widest  # one computing, one read ahead
    room = budget - fixed
    costs = [held(index) for index in range(len(pack_sizes))]
    need = max(costs)
    if room < need:
        raise StreamBudgetError(
            f"--gpu-memory {_size(budget)} is too small: the resident weights take "
            f"{_size(streamed.resident_bytes())}, two layers (one read ahead) {_size(2 * streamed.layer_bytes())}, "
            f"the keys and values of the preface and the stack of shared prefixes {_size(cache)} and one pack "
            f"of {largest} tokens needs {_size(widest + need)}; raise it or lower --max-tokens-per-pack")
    groups, current, used = [], [], 0
    for index, cost in enumerate(costs):
        if current and used + cost > room:
            groups.append(current)
            current, used = [], 0
        current.append(index)
        used += cost
    return groups + [current]


def _size(n_bytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.1f} {unit}"
    return f"{n_bytes} B"
