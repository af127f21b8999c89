"""Per-example results that survive interruption, a second run on the same file, and torn lines.

The store is JSONL: one result per line, appended and flushed as packs finish, every line ending
in ``\\n`` and read by splitting on ``\\n`` alone (so text holding U+2028 or U+0085 reads back as
written). For a ``.csv`` output the store is ``<out>.store.jsonl`` beside it and the CSV is
rendered from the store when the run finishes, so a CSV is never resumed half-written.

- One writer: ``<out>.lock`` is held (``flock``) from opening to closing; a second run on the same
  output fails at once with one line naming the process holding it.
- Provenance: ``<out>.meta.json`` records what produced the results (data hash, task type, the
  model's and tokenizer's content fingerprints, dtype, invscale version and every option that
  changes results, defaults included); a run whose provenance differs in any key, either way, is
  refused instead of mixing results (a store an older invscale wrote without a key is refused, not
  assumed to hold the default). The meta also keeps the seconds spent scoring, summed over runs. Nothing but the lock is created until
  :meth:`ResultsStore.start`, which the caller runs once the model has loaded and the data passed
  every check, so a run that fails at start-up leaves no file behind.
- Reading: a torn last line (a killed write) is dropped and recomputed; a damaged line before it is
  one error naming the file and line; a second result for an index already read is reported and
  dropped (one result per index, always); an index that is not a row of the data (negative, or
  past its end) is a damaged store, named in one line.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from invscale.data import Dataset
from invscale.messages import first_line
from invscale.scoring.distributed import Group
from invscale.scoring.metrics import result_columns

RESULT_SUFFIXES = (".jsonl", ".csv")
BOOKKEEPING_KEYS = ("scoring_seconds", "scoring_path")  # kept in the meta file, not compared as provenance


class ResultsError(RuntimeError):
    """A results file that cannot be written or resumed; the message is one line."""


def _encode_csv_value(value):
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


def read_store(path: str | Path) -> tuple[list[dict], list[str]]:
    """(results, warnings) of a JSONL store: one result per index (later repeats reported and
    dropped), a torn last line ignored; a damaged earlier line raises :class:`ResultsError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = text.split("\n")
    results, seen, repeated = [], set(), []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            result = json.loads(line)
            index = int(result["index"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if number == len(lines):  # the last line, with no newline after it: a write that was cut off
                break
            raise ResultsError(f"{path}: line {number} is damaged (not a result written by invscale); "
                               f"remove the line or pass --overwrite") from None
        if index in seen:
            repeated.append(index)
            continue
        seen.add(index)
        results.append(result)
    warnings = [f"{path}: {len(repeated)} repeated result(s) for index {', '.join(map(str, repeated[:5]))}"
                f"{' …' if len(repeated) > 5 else ''}; kept the first of each"] if repeated else []
    return results, warnings


def read_results(path: str | Path) -> list[dict]:
    """The results of a results file: its store (the file itself for ``.jsonl``, its
    ``.store.jsonl`` for ``.csv``)."""
    return read_store(store_path(Path(path)))[0]


def provenance_mismatch(recorded: dict, provenance: dict) -> tuple[list[str], list[str]]:
    """How a results file's recorded meta differs from this run's ``provenance``, its bookkeeping
    keys apart: (keys the file did not record, keys recorded with another value)."""
    keys = [key for key in dict.fromkeys([*provenance, *recorded]) if key not in BOOKKEEPING_KEYS]
    unrecorded = [key for key in keys if key not in recorded]
    return unrecorded, [key for key in keys if key in recorded and recorded[key] != provenance.get(key)]


def is_complete(path: Path, provenance: dict, rows: int) -> bool:
    """Whether the results file at ``path`` was made with exactly ``provenance`` and holds a result for
    each of the data's ``rows`` rows (nothing is locked or changed; a damaged file is not complete)."""
    meta = path.with_name(path.name + ".meta.json")
    try:
        recorded = json.loads(meta.read_text(encoding="utf-8"))
        results = read_results(path)
    except (OSError, ValueError, ResultsError):
        return False
    if not isinstance(recorded, dict):
        return False
    if any(provenance_mismatch(recorded, provenance)):
        return False
    return {int(result["index"]) for result in results} == set(range(rows))


def store_path(out: Path) -> Path:
    """Where the JSONL store of an output file lives."""
    return out.with_name(out.name + ".store.jsonl") if out.suffix.lower() == ".csv" else out


def check_out_path(out: Path, data: str | None = None) -> None:
    """Refuse an output path that is not a results file we can write: one line naming the problem."""
    if out.suffix.lower() not in RESULT_SUFFIXES:
        raise ResultsError(f"--out {out}: name a .jsonl or .csv file (results are written as JSONL or CSV)")
    if out.is_dir():
        raise ResultsError(f"--out {out}: is a directory; name a .jsonl or .csv file")
    if data not in (None, "-") and Path(data).exists() and out.exists() and out.resolve() == Path(data).resolve():
        raise ResultsError(f"--out {out}: is the input file; results would overwrite the data")
    for special in ("/proc", "/sys", "/dev"):
        if str(out.resolve()).startswith(special + "/"):
            raise ResultsError(f"--out {out}: is under {special}, not a place for files")


class ResultsStore:
    """The results of one (data, model, settings) run: resumable, one writer at a time.

    Use as a context manager: entering takes the lock and reads what a compatible earlier run left
    (``existing``); :meth:`start` writes the provenance (and, with ``overwrite``, discards the old
    results) once the run is sure to start; :meth:`append` adds finished results; :meth:`finalize`
    writes the sorted file (and renders the CSV); leaving releases the lock.
    """

    def __init__(self, path: str | Path, provenance: dict, columns: list[str], overwrite: bool = False,
                 rows: int | None = None):
        self.path = Path(path)
        self.rows = rows  # the data's row count: stored indexes must lie in range(rows)
        check_out_path(self.path)
        self.store = store_path(self.path)
        self.meta_path = self.path.with_name(self.path.name + ".meta.json")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.provenance, self.columns, self.overwrite = provenance, columns, overwrite
        self.notes: dict = {}  # bookkeeping the run adds to the meta file (the scoring path it took)
        self.existing: list[dict] = []
        self.warnings: list[str] = []
        self._lock = None
        self._written: set[int] = set()
        self.started = False
        self.seconds_before = 0.0  # scoring time earlier runs of this store spent

    def __enter__(self) -> "ResultsStore":
        self._acquire()
        try:
            if not self.overwrite and self.store.exists():
                self._check_provenance()
                self.existing, self.warnings = read_store(self.store)
                self._check_indexes()
        except BaseException:
            self._release()
            raise
        self._written = {int(r["index"]) for r in self.existing}
        return self

    def __exit__(self, *exc) -> None:
        self._release()

    def _acquire(self) -> None:
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(self.lock_path, "a+", encoding="utf-8")
            except OSError as exc:
                raise ResultsError(f"--out {self.path}: cannot write there: {exc.strerror or exc}") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise ResultsError(f"{self.path}: another invscale run ({holder}) is writing these results; "
                                   f"wait for it to finish or pick another --out") from None
            try:  # a run that finished meanwhile removed the file we locked: lock the current one
                if os.fstat(handle.fileno()).st_ino == os.stat(self.lock_path).st_ino:
                    break
            except FileNotFoundError:
                pass
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._lock = handle

    def _release(self) -> None:
        if self._lock is not None:
            try:
                self.lock_path.unlink()
            except OSError:
                pass
            self._lock.close()  # closing the file releases the flock
            self._lock = None

    def _check_provenance(self) -> None:
        if not self.meta_path.exists():
            raise ResultsError(f"{self.path}: exists but has no {self.meta_path.name}; pass --overwrite or another --out")
        try:
            recorded = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ResultsError(f"{self.meta_path}: damaged; pass --overwrite or another --out") from None
        if not isinstance(recorded, dict):
            raise ResultsError(f"{self.meta_path}: damaged; pass --overwrite or another --out")
        unrecorded, differing = provenance_mismatch(recorded, self.provenance)
        if unrecorded:
            raise ResultsError(f"{self.path}: was written by an older invscale that did not record "
                               f"{', '.join(unrecorded)}; pass --overwrite to score it again, or another --out")
        if differing:
            shown = ", ".join(f"{key}: {recorded.get(key)!r:.40} there, {self.provenance.get(key)!r:.40} now"
                              for key in differing)
            raise ResultsError(f"{self.path}: holds results made with another {', '.join(differing)} ({shown}); "
                               f"pass --overwrite or another --out")
        self.seconds_before = float(recorded.get("scoring_seconds", 0.0))

    def _check_indexes(self) -> None:
        if self.rows is None:
            return
        unknown = sorted(int(r["index"]) for r in self.existing if not 0 <= int(r["index"]) < self.rows)
        if unknown:
            raise ResultsError(f"{self.store}: damaged: holds a result for index {unknown[0]}, which is not a row of "
                               f"the data (indexes 0 to {self.rows - 1}); pass --overwrite or another --out")

    def done_indexes(self) -> set[int]:
        """Row indexes already scored."""
        return {int(result["index"]) for result in self.existing}

    def start(self) -> None:
        """Write the provenance and open the store for appending (emptied with ``overwrite``)."""
        if self.overwrite or not self.store.exists():
            self.store.write_text("", encoding="utf-8")
            if self.store != self.path and self.path.exists():
                self.path.unlink()
        self._write_meta(self.seconds_before)
        self.started = True

    def _write_meta(self, seconds: float) -> None:
        _replace(self.meta_path, json.dumps({**self.provenance, **self.notes, "scoring_seconds": seconds}, indent=2)
                 + "\n")

    def append(self, results: list[dict]) -> None:
        """Write finished results (one per index, ever) and flush them to disk."""
        fresh = [r for r in results if int(r["index"]) not in self._written]
        if not fresh:
            return
        try:
            with open(self.store, "a", encoding="utf-8", newline="") as handle:
                if handle.tell() and not self._ends_with_newline():
                    handle.write("\n")  # after a torn last line: start a clean one
                handle.writelines(json.dumps(result, ensure_ascii=False) + "\n" for result in fresh)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:  # a torn line this leaves is dropped on resume
            raise ResultsError(f"{self.store}: cannot write: {exc.strerror or exc}; the results written before "
                               f"are kept, run the same command again once there is room") from None
        self._written.update(int(r["index"]) for r in fresh)

    def _ends_with_newline(self) -> bool:
        with open(self.store, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def finalize(self, results: list[dict], seconds: float = 0.0) -> float:
        """Rewrite the store with ``results`` sorted by index (one each), render the CSV, and add
        ``seconds`` (this run's scoring time) to the store's; returns the store's total."""
        unique = {int(r["index"]): r for r in reversed(results)}
        ordered = [unique[index] for index in sorted(unique)]
        _replace(self.store, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
        if self.store != self.path:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(self.columns)
            writer.writerows([_encode_csv_value(r.get(c, "")) for c in self.columns] for r in ordered)
            _replace(self.path, buffer.getvalue())
        total = round(self.seconds_before + seconds, 3)
        self._write_meta(total)
        return total


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a staging file, so a reader sees the old file or the new
    one; a failed write (a full disk) removes the staging file and is one line naming ``path``."""
    staging = path.with_name(path.name + ".tmp")
    try:
        staging.write_text(text, encoding="utf-8", newline="")
        os.replace(staging, path)
    except OSError as exc:
        staging.unlink(missing_ok=True)
        raise ResultsError(f"{path}: cannot write: {exc.strerror or exc}") from None


def provenance(dataset: Dataset, model: dict, dtype: str, too_long: str = "error", chat_template: bool = False,
               mutual_info: bool = False, chains: dict | None = None, sampling: dict | None = None) -> dict:
    """What a results file's results depend on: the data's content and task type, the model's and
    tokenizer's content (``model``: from :func:`invscale.models.fingerprint`), dtype, version, what
    is done with rows too long for the model, whether prompts were wrapped in the chat template and
    whether acc_mutual_info was computed, and how chains of thought were written before the answers
    (``chains``: their settings) and, for numeric rows, how their estimates were sampled
    (``sampling``); recorded whatever their value, so a default is never confused with a missing
    key."""
    from importlib import metadata

    try:
        version = metadata.version("invscale")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"data_sha256": dataset.content_sha256, "task_type": dataset.task_type.value, **model, "dtype": dtype,
            "invscale_version": version, "too_long": too_long, "chat_template": "applied" if chat_template else "none",
            "mutual_info": "computed" if mutual_info else "none", "chain_of_thought": chains or "none",
            "sampling": sampling or "none"}


def open_results(path: str | Path, dataset: Dataset, model: dict, dtype: str, overwrite: bool = False,
                 too_long: str = "error", chat_template: bool = False, mutual_info: bool = False,
                 chains: dict | None = None, sampling: dict | None = None) -> ResultsStore:
    """The results store of ``dataset`` scored by ``model`` (a fingerprint) in ``dtype``, rows too long
    for the model handled as ``too_long`` says, prompts in the chat template with ``chat_template``,
    acc_mutual_info's column with ``mutual_info``, after chains of thought written as ``chains``
    (their settings) says, numeric estimates sampled as ``sampling`` says."""
    return ResultsStore(path, provenance(dataset, model, dtype, too_long, chat_template, mutual_info, chains,
                                         sampling),
                        result_columns(dataset.task_type, dataset.extra_columns, too_long, mutual_info,
                                       chains is not None),
                        overwrite=overwrite, rows=len(dataset.rows))


class FollowerStore:
    """What a rank other than the main one sees of the results store: the indexes already scored
    (from the main rank); it writes nothing. With no indexes, the store of results kept in memory
    only."""

    def __init__(self, path, done: set[int]):
        self.path, self._done = path, done
        self.notes: dict = {}
        self.existing: list[dict] = []
        self.warnings: list[str] = []

    def done_indexes(self) -> set[int]:
        """Row indexes already scored (as the main rank read them)."""
        return self._done

    def start(self) -> None:
        """Nothing to write."""

    def append(self, results: list[dict]) -> None:
        """Nothing to write."""

    def finalize(self, results: list[dict], seconds: float = 0.0) -> float:
        """Nothing to write; the seconds are the main rank's to keep."""
        return seconds


@contextmanager
def results_store(group: Group, open_store: Callable, path):
    """The results store on the main rank (``open_store()``), a :class:`FollowerStore` elsewhere;
    the main rank's done indexes, or the one-line error opening it raised, reach every rank."""
    if group.size == 1:
        with open_store() as store:
            yield store
        return
    if group.is_main:
        try:
            store = open_store().__enter__()
        except Exception as exc:  # the followers stop with the same line
            group.broadcast(("error", first_line(exc)))
            raise
        try:
            group.broadcast(("done", store.done_indexes()))
            yield store
        finally:
            store.__exit__(None, None, None)
        return
    kind, value = group.broadcast(None)
    if kind == "error":
        raise ResultsError(value)
    yield FollowerStore(path, value)
