"""Model families a sweep can name, with their sizes, and whether a model fits the device."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Member:
    """One published model of a family: its hub id, parameters (all, and without the token and
    position embeddings and an untied output embedding, as scaling-law plots count them) and the
    training tokens the family reports (None where it reports none)."""

    model: str
    params: int
    non_embedding_params: int
    training_tokens: int | None

    @property
    def training_flops(self) -> float | None:
        """6 · N · D, the usual estimate of training compute (N without embeddings)."""
        return None if self.training_tokens is None else 6.0 * self.non_embedding_params * self.training_tokens


B, T = 10**9, 10**12
# parameter counts computed from each model's published config (tests/test_sweep.py rebuilds them)
FAMILIES: dict[str, tuple[str, list[Member]]] = {
    "opt": ("OPT, 125m … 66b, 180B tokens", [
        Member("facebook/opt-125m", 125_239_296, 85_056_000, 180 * B),
        Member("facebook/opt-350m", 331_196_416, 303_357_952, 180 * B),
        Member("facebook/opt-1.3b", 1_315_758_080, 1_208_602_624, 180 * B),
        Member("facebook/opt-2.7b", 2_651_596_800, 2_517_652_480, 180 * B),
        Member("facebook/opt-6.7b", 6_658_473_984, 6_444_163_072, 180 * B),
        Member("facebook/opt-13b", 12_853_473_280, 12_585_584_640, 180 * B),
        Member("facebook/opt-30b", 29_974_540_288, 29_599_496_192, 180 * B),
        Member("facebook/opt-66b", 65_719_701_504, 65_237_501_952, 180 * B),
    ]),
    "pythia": ("Pythia, 70m … 12b, 300B tokens", [
        Member("EleutherAI/pythia-70m", 70_426_624, 18_915_328, 300 * B),
        Member("EleutherAI/pythia-160m", 162_322_944, 85_056_000, 300 * B),
        Member("EleutherAI/pythia-410m", 405_334_016, 302_311_424, 300 * B),
        Member("EleutherAI/pythia-1b", 1_011_781_632, 805_736_448, 300 * B),
        Member("EleutherAI/pythia-1.4b", 1_414_647_808, 1_208_602_624, 300 * B),
        Member("EleutherAI/pythia-2.8b", 2_775_208_960, 2_517_652_480, 300 * B),
        Member("EleutherAI/pythia-6.9b", 6_857_302_016, 6_444_163_072, 300 * B),
        Member("EleutherAI/pythia-12b", 11_846_072_320, 11_327_027_200, 300 * B),
    ]),
    "gpt2": ("GPT-2, 124M … 1.5B, training tokens unpublished", [
        Member("openai-community/gpt2", 124_439_808, 85_056_000, None),
        Member("openai-community/gpt2-medium", 354_823_168, 302_311_424, None),
        Member("openai-community/gpt2-large", 774_030_080, 708_390_400, None),
        Member("openai-community/gpt2-xl", 1_557_611_200, 1_475_561_600, None),
    ]),
    "qwen2.5": ("Qwen2.5 base, 0.5B … 72B, 18T tokens", [
        Member("Qwen/Qwen2.5-0.5B", 494_032_768, 357_898_112, 18 * T),
        Member("Qwen/Qwen2.5-1.5B", 1_543_714_304, 1_310_340_608, 18 * T),
        Member("Qwen/Qwen2.5-3B", 3_085_938_688, 2_774_773_760, 18 * T),
        Member("Qwen/Qwen2.5-7B", 7_615_616_512, 6_525_621_760, 18 * T),
        Member("Qwen/Qwen2.5-14B", 14_770_033_664, 13_212_898_304, 18 * T),
        Member("Qwen/Qwen2.5-32B", 32_763_876_352, 31_206_740_992, 18 * T),
        Member("Qwen/Qwen2.5-72B", 72_706_203_648, 70_214_787_072, 18 * T),
    ]),
    "gemma2": ("Gemma 2 base, 2b … 27b, 2T/8T/13T tokens", [
        Member("google/gemma-2-2b", 2_614_341_888, 2_024_517_888, 2 * T),
        Member("google/gemma-2-9b", 9_241_705_984, 8_324_201_984, 8 * T),
        Member("google/gemma-2-27b", 27_227_128_320, 26_047_480_320, 13 * T),
    ]),
    "gpt-neo": ("GPT-Neo, 125M … 2.7B, 300B/380B/420B tokens of the Pile", [
        Member("EleutherAI/gpt-neo-125m", 125_198_592, 85_028_352, 300 * B),
        Member("EleutherAI/gpt-neo-1.3B", 1_315_575_808, 1_208_455_168, 380 * B),
        Member("EleutherAI/gpt-neo-2.7B", 2_651_307_520, 2_517_406_720, 420 * B),
    ]),
    "gpt-j": ("GPT-J, 6B, 402B tokens of the Pile", [
        Member("EleutherAI/gpt-j-6b", 6_050_882_784, 5_638_005_984, 402 * B),
    ]),
    "bloom": ("BLOOM, 560m … 7b1, training tokens not recorded here", [
        Member("bigscience/bloom-560m", 559_214_592, 302_313_472, None),
        Member("bigscience/bloom-1b1", 1_065_314_304, 679_962_624, None),
        Member("bigscience/bloom-1b7", 1_722_408_960, 1_208_606_720, None),
        Member("bigscience/bloom-3b", 3_002_557_440, 2_360_304_640, None),
        Member("bigscience/bloom-7b1", 7_069_016_064, 6_041_411_584, None),
    ]),
    "cerebras-gpt": ("Cerebras-GPT, 111M … 13B, 20 tokens per parameter (2.2B … 257B)", [
        Member("cerebras/Cerebras-GPT-111M", 111_050_496, 70_880_256, 2_200_000_000),
        Member("cerebras/Cerebras-GPT-256M", 255_977_024, 199_069_184, 5_100_000_000),
        Member("cerebras/Cerebras-GPT-590M", 590_310_912, 509_970_432, 11_800_000_000),
        Member("cerebras/Cerebras-GPT-1.3B", 1_315_723_264, 1_208_602_624, 26_300_000_000),
        Member("cerebras/Cerebras-GPT-2.7B", 2_651_553_280, 2_517_652_480, 53 * B),
        Member("cerebras/Cerebras-GPT-6.7B", 6_658_404_352, 6_444_163_072, 133 * B),
        Member("cerebras/Cerebras-GPT-13B", 12_853_386_240, 12_585_584_640, 257 * B),
    ]),
    "mamba": ("Mamba, 130m … 2.8b, 300B tokens of the Pile", [
        Member("state-spaces/mamba-130m-hf", 129_135_360, 90_520_320, 300 * B),
        Member("state-spaces/mamba-370m-hf", 371_516_416, 320_029_696, 300 * B),
        Member("state-spaces/mamba-790m-hf", 793_204_224, 715_974_144, 300 * B),
        Member("state-spaces/mamba-1.4b-hf", 1_372_178_432, 1_269_204_992, 300 * B),
        Member("state-spaces/mamba-2.8b-hf", 2_768_345_600, 2_639_628_800, 300 * B),
    ]),
    "qwen3": ("Qwen3 (post-trained; the 32B has no base release), 0.6B … 32B, 36T tokens", [
        Member("Qwen/Qwen3-0.6B", 596_049_920, 440_467_456, 36 * T),
        Member("Qwen/Qwen3-1.7B", 1_720_574_976, 1_409_410_048, 36 * T),
        Member("Qwen/Qwen3-4B", 4_022_468_096, 3_633_511_936, 36 * T),
        Member("Qwen/Qwen3-8B", 8_190_735_360, 6_946_075_648, 36 * T),
        Member("Qwen/Qwen3-14B", 14_768_307_200, 13_212_482_560, 36 * T),
        Member("Qwen/Qwen3-32B", 32_762_123_264, 31_206_298_624, 36 * T),
    ]),
    "smollm2": ("SmolLM2 base, 135M … 1.7B, 2T/4T/11T tokens", [
        Member("HuggingFaceTB/SmolLM2-135M", 134_515_008, 106_203_456, 2 * T),
        Member("HuggingFaceTB/SmolLM2-360M", 361_821_120, 314_635_200, 4 * T),
        Member("HuggingFaceTB/SmolLM2-1.7B", 1_711_376_384, 1_610_713_088, 11 * T),
    ]),
}


# training tokens per optimizer step, where a family publishes checkpoints named by step
TOKENS_PER_STEP = {"pythia": 2_097_152}  # 1,024 sequences × 2,048 tokens


def member_at(member: Member, family: str | None, revision: str) -> Member:
    """``member`` at a training checkpoint: the same sizes, and the tokens seen by then where the
    family gives tokens per step and the revision names a step."""
    from invscale.study.checkpoints import training_step

    name = f"{member.model}@{revision}"
    step = training_step(name)
    tokens = TOKENS_PER_STEP[family] * step if family in TOKENS_PER_STEP and step is not None else None
    return Member(name, member.params, member.non_embedding_params, tokens)


def family_members(name: str) -> list[Member]:
    """The members of a family, smallest first; ValueError naming the known families if unknown."""
    if name not in FAMILIES:
        raise ValueError(f"--family {name}: known families: {', '.join(FAMILIES)}")
    return sorted(FAMILIES[name][1], key=lambda member: member.params)


def non_embedding_params(model: torch.nn.Module) -> int:
    """Parameters of a loaded model without its token and learned position embeddings and an
    untied output embedding."""
    embeddings = {id(model.get_input_embeddings().weight)}
    head = model.get_output_embeddings()
    if head is not None:
        embeddings.add(id(head.weight))
    positional = {id(p) for name, p in model.named_parameters() if name.endswith(("wpe.weight", "embed_positions.weight"))}
    return sum(p.numel() for p in model.parameters() if id(p) not in embeddings | positional)


def family_help() -> str:
    """One line per family for ``invscale sweep --help``."""
    return "; ".join(f"{name} ({description})" for name, (description, _) in FAMILIES.items())


OVERHEAD = 1.2  # weights plus room for activations, the preface's KV and the allocator


def device_memory(device: torch.device) -> int:
    """Bytes of memory on ``device`` (the GPU's total, or the machine's RAM for CPU)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def fit_problem(params: int, dtype: torch.dtype, device: torch.device) -> str | None:
    """Why a model of ``params`` parameters cannot be scored resident on ``device``, or None."""
    needed = params * torch.finfo(dtype).bits // 8 * OVERHEAD
    available = device_memory(device)
    if needed <= available:
        return None
    return (f"needs about {needed / 2**30:.1f} GiB in {str(dtype).removeprefix('torch.')}, "
            f"{device.type} has {available / 2**30:.1f} GiB")
