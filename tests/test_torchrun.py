"""Data-parallel scoring on torchrun (gloo, CPU): any number of processes writes what one writes,
and a run killed midway resumes with any number of processes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from invscale.scoring.distributed import deal
from invscale.scoring.trie import SequenceRef, build_pack
from random_data import random_classification

TORCHRUN = shutil.which("torchrun")
pytestmark = pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")
ENV = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def write_rows(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def launch(processes: int, *args) -> list[str]:
    """The command line of ``invscale ARGS`` on ``processes`` processes (a plain process for 1)."""
    if processes == 1:
        return [sys.executable, "-m", "invscale", *args]
    return [TORCHRUN, "--standalone", f"--nproc-per-node={processes}", "-m", "invscale", *args]


def run(processes: int, *args) -> subprocess.CompletedProcess:
    result = subprocess.run(launch(processes, *args), env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_units_are_dealt_to_the_least_loaded_ranks():
    units = [[build_pack([SequenceRef(0, tuple(range(size + 1)), 1)])] for size in (4, 8, 6)]  # last token unread
    assert [unit[0].n_tokens for unit in units] == [4, 8, 6]
    loads = [0, 3, 20, 1]
    assert deal([sum(pack.n_tokens for pack in unit) for unit in units], loads) == [1, 0, 3]  # 8 tokens to rank 0 (load 0), 6 to rank 3 (load 1), 4 to rank 1
    assert loads == [8, 7, 20, 7]


@pytest.fixture(scope="module")
def scored(checkpoint_dirs, tmp_path_factory):
    """A dataset, its score command's arguments, and the CSV one process writes."""
    folder = tmp_path_factory.mktemp("torchrun")
    data = write_rows(folder / "d.jsonl", random_classification(61, n_rows=240))
    args = ["score", str(data), "--model", checkpoint_dirs["llama-gqa2"], "--device", "cpu",
            "--max-tokens-per-pack", "48", "--out"]
    run(1, *args, str(folder / "one.csv"))
    return folder, args


@pytest.mark.parametrize("processes, extra", [(2, []), (3, []), (2, ["--offload", "disk", "--gpu-memory", "1MiB"]),
                                             (2, ["--path", "cache"])])
def test_score_on_several_processes_writes_what_one_writes(scored, processes, extra):
    """3 processes do not divide the packs evenly; streamed, the groups of packs are dealt out; on the
    cache path, the contexts; the main process alone prints and writes."""
    folder, args = scored
    tag = "-".join(argument.strip("-") for argument in extra if argument.startswith("--"))
    out = folder / f"n{processes}{'-' + tag if tag else ''}.csv"
    result = run(processes, *args[:-1], *extra, "--out", str(out))
    one = folder / "one.csv"
    if extra:  # bytes are promised between processes of one path; streamed vs resident is to 1e-5
        one = folder / f"one-{tag}.csv"
        run(1, *args[:-1], *extra, "--out", str(one))
    assert out.read_bytes() == one.read_bytes()
    assert result.stdout.count("results") == 1  # one summary, from the main process


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _rank(pid: int) -> int | None:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    ranks = [entry[5:] for entry in environ if entry.startswith(b"RANK=")]
    return int(ranks[0]) if ranks else None


def test_a_rank_killed_midway_then_one_process_completes_the_file(scored):
    folder, args = scored
    out = folder / "killed.csv"
    store = out.with_name(out.name + ".store.jsonl")
    job = subprocess.Popen(launch(2, *args, str(out)), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while job.poll() is None and time.monotonic() < deadline:
        if store.exists() and store.read_text().count("\n") >= 20:
            break
        time.sleep(0.05)
    follower = [pid for pid in _children(job.pid) if _rank(pid) == 1]
    assert follower and job.poll() is None, "the run ended before a rank could be killed"
    os.kill(follower[0], signal.SIGKILL)
    assert job.wait(timeout=300) != 0  # torchrun stops the job when a rank dies
    written, rows = store.read_text().count("\n"), Path(args[1]).read_text().count("\n")
    assert 20 <= written < rows
    result = run(1, *args, str(out))
    assert f"resuming: {written} of {rows}" in " ".join(result.stderr.split())
    assert out.read_bytes() == (folder / "one.csv").read_bytes()


def test_a_sweep_on_two_processes_writes_what_one_writes(checkpoint_dirs, tmp_path):
    data = [write_rows(tmp_path / f"{name}.jsonl", random_classification(seed, n_rows=40))
            for name, seed in (("first", 62), ("second", 63))]
    sweep = ["sweep", *map(str, data), "--models", f"{checkpoint_dirs['opt-350m-shape']},{checkpoint_dirs['llama-gqa3']}",
             "--device", "cpu", "--max-tokens-per-pack", "64", "--out"]
    run(1, *sweep, str(tmp_path / "one"))
    run(2, *sweep, str(tmp_path / "two"))
    references = sorted((tmp_path / "one" / "results").rglob("*.results.jsonl"))
    assert len(references) == 4
    for reference in references:
        assert (tmp_path / "two" / reference.relative_to(tmp_path / "one")).read_bytes() == reference.read_bytes()
    assert (tmp_path / "two" / "summary.csv").read_text() == (tmp_path / "one" / "summary.csv").read_text()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_stop_when_their_launcher_is_killed_and_the_run_resumes(scored):
    """A scheduler or the OOM killer SIGKILLs the launcher's process group: its workers (in sessions of
    their own) stop instead of carrying on without it, and the same command completes the file. The
    workers are paused across the kill so that, left to themselves, they would finish the run."""
    folder, args = scored
    out = folder / "orphaned.csv"
    store = out.with_name(out.name + ".store.jsonl")
    job = subprocess.Popen(launch(2, *args, str(out)), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.monotonic() + 300
    while job.poll() is None and time.monotonic() < deadline:
        if store.exists() and store.read_text().count("\n") >= 20:
            break
        time.sleep(0.05)
    workers = [pid for pid in _children(job.pid) if _rank(pid) is not None]
    assert len(workers) == 2 and job.poll() is None, "the run ended before its launcher could be killed"
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=60)
    for pid in workers:
        os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [pid for pid in workers if _alive(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "workers outlived their launcher by 30 s"
    rows = Path(args[1]).read_text().count("\n")
    assert store.read_text().count("\n") < rows, "the workers carried on without their launcher"
    run(1, *args, str(out))
    assert out.read_bytes() == (folder / "one.csv").read_bytes()


def test_one_process_on_other_threads_agrees_within_the_stated_tolerance(scored):
    """torchrun gives each process one thread; one process on more threads rounds its CPU matrix
    products differently, which the README states: within 1e-4 of a log-prob (the tolerance the scorer
    is held to against the reference), not byte for byte."""
    from invscale.results import read_results

    folder, args = scored
    out = folder / "threads.csv"
    result = subprocess.run(launch(1, *args, str(out)), env={**ENV, "OMP_NUM_THREADS": "2"}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    one, other = (sorted(read_results(path), key=lambda r: r["index"]) for path in (folder / "one.csv", out))
    assert [r["index"] for r in one] == [r["index"] for r in other]
    difference = max(abs(a - b) for x, y in zip(one, other) for a, b in zip(x["class_logprobs"], y["class_logprobs"]))
    assert difference <= 1e-4


def test_evaluate_on_two_processes_writes_what_one_writes(checkpoint_dirs, tmp_path):
    args = ["evaluate", "--tasks", "decoy", "--rows", "12", "--model", checkpoint_dirs["opt-plain"], "--device", "cpu",
            "--out"]  # --rows, not --n: torchrun's own parser takes "--n" for an abbreviation of its options
    run(1, *args, str(tmp_path / "one"))
    run(2, *args, str(tmp_path / "two"))
    for name in ("decoy.jsonl", "decoy.results.jsonl"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_written_text_on_two_processes_is_what_one_writes(checkpoint_dirs, tmp_path):
    """Sampled numeric estimates and greedy chains of thought, their blocks dealt out to two
    processes, give one process's bytes (each sample draws from its own (seed, row, sample) stream)."""
    model = checkpoint_dirs["opt-plain"]
    numeric = write_rows(tmp_path / "anchoring.jsonl", [
        {"prompt": f"Q: How many legs do {n} spiders have?\nA: The answer is", "true_answer": 8 * n, "anchor": a}
        for n in range(3, 17) for a in (8 * n, 4 * n, 12 * n)])
    classes = write_rows(tmp_path / "rows.jsonl", random_classification(3, n_rows=40))
    for data, extra in ((numeric, ["--samples", "3"]), (classes, ["--cot", "--reasoning-tokens", "5"])):
        outs = [tmp_path / f"{data.stem}-{processes}.jsonl" for processes in (1, 2)]
        for processes, out in zip((1, 2), outs):
            run(processes, "score", str(data), "--model", model, *extra, "--out", str(out))
        assert outs[0].read_bytes() == outs[1].read_bytes()


def test_the_process_group_is_destroyed_before_interpreter_shutdown(tmp_path):
    """Joining the group registers an exit handler that destroys it while the interpreter is whole:
    left to interpreter shutdown, gloo's threads sometimes abort a worker (SIGABRT) after its work."""
    script = tmp_path / "leave.py"
    script.write_text(
        "import atexit, torch\n"
        "from invscale.scoring.distributed import current\n"
        "group = current()\n"
        "assert group.size == 2 and torch.distributed.is_initialized()\n"
        "atexit._run_exitfuncs()\n"
        "assert not torch.distributed.is_initialized()\n"
        "print('left', group.rank)\n")
    result = subprocess.run([TORCHRUN, "--standalone", "--nproc-per-node=2", str(script)], env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(result.stdout.split("\n")) == ["", "left 0", "left 1"]
