"""Data-parallel scoring under torchrun: every rank plans the same packs, runs its share, and the
main rank (rank 0) receives every pack's answer log-probs and is the only writer.

Planning is deterministic (the same rows, tokenizer and settings give the same packs in the same
order on every rank), so ranks agree on the work without exchanging it. Packs are dealt out in
rounds of one unit per rank (a unit is one pack, or one streamed group of packs): within a round
the largest unit goes to the rank that has computed the fewest unique tokens so far, so shares
stay balanced by tokens. After each round every rank's answer log-probs (a few kilobytes) are
gathered, and every rank walks all of the round's packs in order, so the results rank 0 writes
are those of one process, keyed by row index, whatever the number of ranks; a run killed midway
resumes with any number of processes, including one.

Only answer log-probs cross processes, so the process group is gloo (TCP) on CPU and GPU alike.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from typing import Callable, Iterable, Iterator

import torch

from invscale.scoring.trie import Pack

# A round waits for its slowest rank; a streamed group of a large model can take many minutes.
ROUND_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Group:
    """The processes scoring together: this one's rank and how many there are."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes results and prints progress."""
        return self.rank == 0

    def broadcast(self, value):
        """The main rank's ``value``, on every rank."""
        if self.size == 1:
            return value
        holder = [value]
        torch.distributed.broadcast_object_list(holder, src=0)
        return holder[0]

    def passes(self, units: Iterable[list[Pack]],
               run_unit: Callable[[list[Pack]], Iterable[torch.Tensor]]) -> Iterator[tuple[Pack, torch.Tensor]]:
        """(pack, its answer log-probs) for every pack of ``units``, in order, on every rank; this rank
        runs its share (``run_unit(packs)`` gives one [T] tensor per pack) and receives the rest."""
        if self.size == 1:
            for unit in units:
                yield from zip(unit, run_unit(unit))
            return
        arrays = self.shared(units, lambda unit: [t.double().cpu().numpy() for t in run_unit(unit)],
                             lambda unit: sum(pack.n_tokens for pack in unit))
        for unit, values in arrays:
            for pack, array in zip(unit, values):
                yield pack, torch.from_numpy(array)

    def shared(self, units: Iterable, run_unit: Callable, size: Callable[[object], int]) -> Iterator[tuple]:
        """(unit, ``run_unit(unit)``) for every unit, in order, on every rank: this rank runs its
        share (dealt by ``size(unit)``, see :func:`deal`) and receives the others' results (any
        object that pickles)."""
        if self.size == 1:
            for unit in units:
                yield unit, run_unit(unit)
            return
        loads = [0] * self.size
        units = iter(units)
        while True:
            round_units = list(islice(units, self.size))
            if not round_units:
                return
            owners = deal([size(unit) for unit in round_units], loads)
            mine = owners.index(self.rank) if self.rank in owners else None
            own = run_unit(round_units[mine]) if mine is not None else None
            gathered: list = [None] * self.size
            torch.distributed.all_gather_object(gathered, (mine, own))
            by_unit = {number: result for number, result in gathered if number is not None}
            for number, unit in enumerate(round_units):
                yield unit, by_unit[number]


def deal(sizes: list[int], loads: list[int]) -> list[int]:
    """The rank of each unit of a round, from their ``sizes`` (tokens): the largest unit to the
    least-loaded rank (ties to the lower rank, units in order), and so on; ``loads`` (tokens so far
    per rank) is updated."""
    by_size = sorted(range(len(sizes)), key=lambda number: (-sizes[number], number))
    by_load = sorted(range(len(loads)), key=lambda rank: (loads[rank], rank))
    owners = [0] * len(sizes)
    for number, rank in zip(by_size, by_load):
        owners[number] = rank
        loads[rank] += sizes[number]
    return owners


def launched_size() -> int:
    """How many processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def current() -> Group:
    """This process's group: under torchrun (``WORLD_SIZE`` > 1) the process group is joined on first
    use; otherwise a group of one."""
    if launched_size() == 1:
        return Group()
    if not torch.distributed.is_initialized():
        exit_with_launcher()
        torch.distributed.init_process_group("gloo", timeout=ROUND_TIMEOUT)
        atexit.register(leave_group)
    return Group(torch.distributed.get_rank(), torch.distributed.get_world_size())


def leave_group() -> None:
    """Destroy the process group while the interpreter is still whole (run at exit). Left to
    interpreter shutdown, gloo's worker threads are torn down with the interpreter and the process
    sometimes aborts (SIGABRT, "terminate called without an active exception") after its work is
    done, failing the whole run."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def exit_with_launcher() -> None:
    """Have the kernel stop this worker (SIGTERM) when the process that launched it dies: torchrun's
    agent stops its workers when one of them fails, but a launcher killed outright (a scheduler
    cancelling the job, the OOM killer) would leave them waiting on their peers for hours. Linux
    only; elsewhere a no-op. The main rank's results are flushed as each pack finishes, so a worker
    stopped this way leaves a store that resumes."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    launcher = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != launcher:  # the launcher died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def local_cuda_device() -> str:
    """The GPU of this process: ``cuda:LOCAL_RANK`` under torchrun, else ``cuda``."""
    local = os.environ.get("LOCAL_RANK")
    return f"cuda:{local}" if local is not None and launched_size() > 1 else "cuda"
