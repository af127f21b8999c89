"""Prize-format task data: read, validate and write rows (CSV or JSONL).

Three layouts, told apart by their columns:

- classification: ``prompt``, ``classes``, ``answer_index``
- logodds / absolute_logodds: ``prompt``, ``other_prompt``, ``classes`` (two), ``answer_index``
- sequence_prob: ``prompt``, ``completion``

``classes`` may be a JSON list or a Python-list string such as ``"[' A', ' B']"`` (the official
files use the latter). Every other column is kept, in order, as ``Row.extra``.
Bad input raises :class:`DataError` with one line naming the file, the row and the field.
"""

from __future__ import annotations

import ast
import csv
import enum
import hashlib
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TextIO


class TaskType(str, enum.Enum):
    """How a row is scored (the prize's task types)."""

    classification = "classification"
    logodds = "logodds"
    absolute_logodds = "absolute_logodds"
    sequence_prob = "sequence_prob"
    numeric = "numeric"


REQUIRED_COLUMNS = {
    TaskType.classification: ("prompt", "classes", "answer_index"),
    TaskType.logodds: ("prompt", "other_prompt", "classes", "answer_index"),
    TaskType.absolute_logodds: ("prompt", "other_prompt", "classes", "answer_index"),
    TaskType.sequence_prob: ("prompt", "completion"),
    TaskType.numeric: ("prompt", "true_answer", "anchor"),
}


class DataError(ValueError):
    """A malformed input file; the message is one line naming file, row and field."""


# Columns results are written under; an input column of the same name is kept as ``input_<name>``.
RESULT_NAMES = frozenset({"index", "loss", "correct", "predicted", "total_logprob", "class_logprobs",
                          "predicted_norm", "correct_norm", "correct_bytes", "brier_score", "correct_mutual_info",
                          "class_mean_token_logprobs", "answer_mean_token_logprob", "mean_token_logprob",
                          "logodds_difference",
                          "logodds", "other_logodds",
                          "other_class_logprobs", "logprob", "estimate", "valid_samples", "samples", "parsed",
                          "triple"})


@dataclass(frozen=True)
class Row:
    """One validated example. ``index`` is its 0-based position among the file's data rows."""

    index: int
    prompt: str
    classes: tuple[str, ...] = ()
    answer_index: int | None = None
    other_prompt: str | None = None
    completion: str | None = None
    true_answer: float | None = None
    anchor: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dataset:
    """Validated rows of one file with the task type they are scored as."""

    name: str
    task_type: TaskType
    rows: list[Row]
    columns: list[str]
    warnings: list[str] = field(default_factory=list)
    content_sha256: str = ""

    @property
    def extra_columns(self) -> list[str]:
        """Columns beyond those the task type needs, in file order."""
        return [c for c in self.columns if c not in REQUIRED_COLUMNS[self.task_type]]


def infer_task_type(columns: Iterable[str]) -> TaskType:
    """Pick the task type a file's columns describe (``absolute_logodds`` must be asked for)."""
    present = set(columns)
    if "true_answer" in present and "classes" not in present:
        return TaskType.numeric
    if "completion" in present and "classes" not in present:
        return TaskType.sequence_prob
    if "other_prompt" in present:
        return TaskType.logodds
    return TaskType.classification


def check_text(where: str, value: str) -> str:
    """``value`` if it is valid Unicode text (no lone UTF-16 surrogate, which no UTF-8 file can hold
    and no tokenizer takes), else :class:`DataError` naming ``where`` and the character: the one
    check every text entering invscale passes (files, standard input, generated rows, lm-eval
    requests, chat templates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"{where}: not valid Unicode text: a lone surrogate (U+{ord(value[exc.start]):04X}) at "
                        f"character {exc.start + 1}") from None
    return value


def _check_values(where: str, value: Any) -> None:
    """:func:`check_text` on every text inside ``value`` (an extra column: text, lists, objects)."""
    if isinstance(value, str):
        check_text(where, value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_values(where, key)
            _check_values(where, item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_values(where, item)


def _decode(name: str, raw: bytes) -> str:
    """``raw`` as UTF-8 text (a leading byte-order mark dropped), or one line naming the line and
    byte where it is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{name}: line {line}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as "
                        f"UTF-8") from None


def read_dataset(path: str | Path, task_type: TaskType | None = None, split: str | None = None) -> Dataset:
    """Read and validate a prize-format CSV or JSONL file (``"-"`` reads standard input), or a
    Hugging Face dataset (see :func:`read_hf_dataset`): a local dataset folder, or a hub id such as
    ``inverse-scaling/NeQA`` that is not a local path."""
    if str(path) != "-" and (Path(path).is_dir() or (not Path(path).exists() and _looks_like_hub_id(str(path)))):
        return read_hf_dataset(str(path), split, task_type)
    if split is not None:
        raise DataError(f"{path}: --split is for Hugging Face datasets (a dataset folder or a hub id), not a file")
    if str(path) == "-":
        name, text = "<stdin>", _decode("<stdin>", sys.stdin.buffer.read())
    else:
        name = str(path)
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            raise DataError(f"{name}: no such file") from None
        except OSError as exc:
            raise DataError(f"{name}: cannot read: {exc.strerror or exc}") from None
        text = _decode(name, raw)
    records, columns = _parse_records(name, text)
    dataset = validate_records(name, records, columns, task_type)
    dataset.content_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return dataset


def _looks_like_hub_id(text: str) -> bool:
    """``owner/name`` with no file suffix: how the hub names datasets."""
    import re

    return re.fullmatch(r"[\w.-]+/[\w.-]+", text) is not None and Path(text).suffix.lower() not in (
        ".csv", ".jsonl", ".json", ".ndjson")


def read_hf_dataset(source: str, split: str | None = None, task_type: TaskType | None = None) -> Dataset:
    """One split of a Hugging Face dataset in the prize's columns (``prompt``, ``classes`` as a list,
    ``answer_index``; or those of another task type), read by the ``datasets`` library: a folder
    saved by ``save_to_disk``, a folder of data files (parquet, JSONL, CSV), or a hub id, from the
    local cache when ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` is set. ``split`` may be left out
    when there is one. Every problem is one :class:`DataError` line naming the dataset."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"{source}: reading Hugging Face datasets needs the datasets package; install it with: "
                        f"pip install datasets") from None
    datasets.disable_progress_bars()
    try:
        if (Path(source) / "dataset_dict.json").exists() or (Path(source) / "state.json").exists():
            loaded = datasets.load_from_disk(source)
        else:
            loaded = datasets.load_dataset(source)
    except Exception as exc:  # the datasets and hub clients raise many kinds
        from invscale.messages import first_line

        raise DataError(f"{source}: cannot load it as a Hugging Face dataset: {first_line(exc)}") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split is None and len(loaded) == 1:
            split = next(iter(loaded))
        if split not in loaded:
            raise DataError(f"{source}: {'no split ' + repr(split) if split else 'several splits'}; choose one with "
                            f"--split: {', '.join(loaded)}")
        loaded = loaded[split]
    name = f"{source}[{split}]" if split else source
    records = [dict(record) for record in loaded]
    return with_content_hash(validate_records(name, records, list(loaded.column_names), task_type))


def _looks_like_jsonl(name: str, text: str) -> bool:
    suffix = Path(name).suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return True
    if suffix == ".csv":
        return False
    return text.lstrip().startswith("{")


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    record = {}
    for key, value in pairs:
        if key in record:
            raise _RepeatedKey(key)
        record[key] = value
    return record


def _parse_records(name: str, text: str) -> tuple[list[dict[str, Any]], list[str]]:
    if _looks_like_jsonl(name, text):
        records, columns = [], []
        for line_number, line in enumerate(text.split("\n"), start=1):  # JSON text may hold U+2028, U+0085
            if not line.strip():
                continue
            try:
                record = json.loads(line, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as exc:
                raise DataError(f"{name}: row {len(records) + 1} (line {line_number}): not valid JSON: {exc.msg}") from None
            except _RepeatedKey as exc:
                raise DataError(f"{name}: row {len(records) + 1} (line {line_number}): field '{exc}' appears twice "
                                "in the object") from None
            if not isinstance(record, dict):
                raise DataError(f"{name}: row {len(records) + 1} (line {line_number}): expected a JSON object")
            for key in record:
                if key not in columns:
                    columns.append(key)
            records.append(record)
        return records, columns
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = list(reader.fieldnames or [])
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(f"{name}: header: column '{repeated[0]}' appears {columns.count(repeated[0])} times; "
                        "each column may appear once")
    records = []
    for record in reader:
        if None in record:
            raise DataError(f"{name}: row {len(records) + 1}: more fields than the header has columns")
        records.append(record)
    return records, columns


def validate_records(
    name: str, records: list[dict[str, Any]], columns: list[str], task_type: TaskType | None = None
) -> Dataset:
    """Turn parsed records into validated :class:`Row` objects, or raise :class:`DataError`."""
    task_type = TaskType(task_type) if task_type is not None else infer_task_type(columns)
    for column in REQUIRED_COLUMNS[task_type]:
        if column not in columns:
            raise DataError(
                f"{name}: header: field '{column}': missing column (a {task_type.value} file needs "
                f"{', '.join(REQUIRED_COLUMNS[task_type])}; found {', '.join(columns) or 'none'})"
            )
    if not records:
        raise DataError(f"{name}: no data rows")
    known = set(REQUIRED_COLUMNS[task_type])
    renamed = _renamed_columns(columns, known)
    shared: dict = {}  # each distinct prompt and classes value kept once, however many rows repeat it
    rows = [_validate_record(name, i, record, task_type, known, renamed, shared) for i, record in enumerate(records)]
    if task_type is TaskType.numeric:
        _check_triples(name, rows)
    warnings = _space_warnings(name, rows) if task_type is not TaskType.numeric else []
    if renamed:
        warnings.append(f"{name}: column(s) {', '.join(renamed)} share a name with result columns; kept in the "
                        f"results as {', '.join(renamed.values())}")
    return Dataset(name, task_type, rows, [renamed.get(c, c) for c in columns], warnings)


def _renamed_columns(columns: list[str], known: set[str]) -> dict[str, str]:
    """Extra columns named like a result column, and the ``input_`` name each is kept under."""
    renamed = {}
    for column in columns:
        if column in RESULT_NAMES and column not in known:
            new = "input_" + column
            while new in columns or new in renamed.values():
                new = "input_" + new
            renamed[column] = new
    return renamed


def _validate_record(name: str, index: int, record: dict, task_type: TaskType, known: set[str],
                     renamed: dict[str, str], shared: dict) -> Row:
    where = f"{name}: row {index + 1}"

    def text(column: str) -> str:
        value = record.get(column)
        if not isinstance(value, str):
            raise DataError(f"{where}: field '{column}': expected text, got {_describe(value)}")
        if "\x00" in value:
            raise DataError(f"{where}: field '{column}': contains a NUL character")
        return shared.setdefault(check_text(f"{where}: field '{column}'", value), value)

    extra = {renamed.get(key, key): value for key, value in record.items() if key not in known}
    for key, value in extra.items():
        _check_values(f"{where}: field '{key}'", value)
    if task_type is TaskType.numeric:
        return Row(index, text("prompt"), true_answer=_parse_number(where, "true_answer", record.get("true_answer")),
                   anchor=_parse_number(where, "anchor", record.get("anchor")), extra=extra)
    if task_type is TaskType.sequence_prob:
        completion = text("completion")
        if not completion:
            raise DataError(f"{where}: field 'completion': empty")
        return Row(index, text("prompt"), completion=completion, extra=extra)
    classes = _parse_classes(where, record.get("classes"))
    classes = shared.setdefault(classes, classes)
    if task_type is not TaskType.classification and len(classes) != 2:
        raise DataError(f"{where}: field 'classes': a {task_type.value} row needs exactly 2 classes, got {len(classes)}")
    answer_index = _parse_answer_index(where, record.get("answer_index"), len(classes))
    other_prompt = text("other_prompt") if task_type is not TaskType.classification else None
    return Row(index, text("prompt"), classes, answer_index, other_prompt=other_prompt, extra=extra)


def _parse_number(where: str, column: str, value: Any) -> float:
    """A numeric row's ``true_answer`` or ``anchor``: a finite number, or text that reads as one."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            pass
    if number is None or not math.isfinite(number):
        raise DataError(f"{where}: field '{column}': expected a number, got {_describe(value)}")
    return number


def _check_triples(name: str, rows: list[Row]) -> None:
    """Numeric rows come in (control, low anchor, high anchor) triples of one question, as the prize
    pipeline's anchoring loss reads them: the same true answer, the low anchor below the high one."""
    if len(rows) % 3:
        raise DataError(f"{name}: row {len(rows)}: numeric rows come in triples (control, low anchor, high "
                        f"anchor); {len(rows)} rows is not a whole number of triples")
    for first in range(0, len(rows), 3):
        control, low, high = rows[first:first + 3]
        for row in (low, high):
            if row.true_answer != control.true_answer:
                raise DataError(f"{name}: row {row.index + 1}: field 'true_answer': {row.true_answer:g} differs from "
                                f"{control.true_answer:g} on row {control.index + 1}, the control of its triple")
        if not low.anchor < high.anchor:
            raise DataError(f"{name}: row {high.index + 1}: field 'anchor': the high anchor ({high.anchor:g}) must "
                            f"be above the low anchor ({low.anchor:g}) on row {low.index + 1}")


def _describe(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r:.40}"


def _parse_classes(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataError(f"{where}: field 'classes': cannot parse {value!r:.60} as a list of strings") from None
        if isinstance(value, (list, tuple)):  # '\ud83d\ude00' in Python's syntax is two halves; JSON's is one emoji
            value = [_join_surrogates(item) if isinstance(item, str) else item for item in value]
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{where}: field 'classes': expected a list of strings, got {_describe(value)}")
    if not value:
        raise DataError(f"{where}: field 'classes': empty list")
    if len(value) < 2:
        raise DataError(f"{where}: field 'classes': needs at least 2 classes, got 1")
    for position, item in enumerate(value):
        if not isinstance(item, str):
            raise DataError(f"{where}: field 'classes': class {position} is not a string ({_describe(item)})")
        if not item:
            raise DataError(f"{where}: field 'classes': class {position} is an empty string")
        if "\x00" in item:
            raise DataError(f"{where}: field 'classes': class {position} contains a NUL character")
        check_text(f"{where}: field 'classes': class {position}", item)
        if item in value[:position]:
            raise DataError(f"{where}: field 'classes': class {position} repeats class {value.index(item)} ({item!r})")
    return tuple(value)


def _join_surrogates(text: str) -> str:
    """``text`` with each UTF-16 surrogate pair joined into the character it encodes (lone halves
    are left for :func:`check_text` to name)."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _parse_answer_index(where: str, value: Any, n_classes: int) -> int:
    parsed: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        parsed = value
    elif isinstance(value, float) and value.is_integer():
        parsed = int(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
        if number is not None and number.is_integer():
            parsed = int(number)
    if parsed is None:
        raise DataError(f"{where}: field 'answer_index': expected an integer, got {_describe(value)}")
    if not 0 <= parsed < n_classes:
        raise DataError(f"{where}: field 'answer_index': {parsed} is out of range for {n_classes} classes")
    return parsed


def _continuations(row: Row) -> tuple[str, ...]:
    return row.classes if row.classes else (row.completion or "",)


def _space_warnings(name: str, rows: list[Row]) -> list[str]:
    """The prize pipeline warns about classes without a leading space; so do we, once per file."""
    offending = [(row, c) for row in rows for c in _continuations(row) if not c[:1].isspace()]
    if not offending:
        return []
    first_row, first_class = offending[0]
    n_rows = len({row.index for row, _ in offending})
    return [
        f"{name}: {n_rows} row(s) have a class or completion without a leading space (first: row {first_row.index + 1}, "
        f"{first_class!r}); it is scored as written, usually one wants {' ' + first_class!r}"
    ]


def row_to_record(row: Row, task_type: TaskType, classes_as_text: bool) -> dict[str, Any]:
    """A row as a plain record in prize column order, extra columns after."""
    record: dict[str, Any] = {"prompt": row.prompt}
    if task_type is TaskType.numeric:
        record["true_answer"] = _plain_number(row.true_answer)
        record["anchor"] = _plain_number(row.anchor)
    elif task_type is TaskType.sequence_prob:
        record["completion"] = row.completion
    else:
        if row.other_prompt is not None:
            record["other_prompt"] = row.other_prompt
        record["classes"] = repr(list(row.classes)) if classes_as_text else list(row.classes)
        record["answer_index"] = row.answer_index
    record.update(row.extra)
    return record


def _plain_number(value: float) -> int | float:
    """A whole number as an int (``3`` rather than ``3.0``), any other as it is."""
    return int(value) if value.is_integer() else value


def write_dataset(dataset: Dataset, path: str | Path | None = None, fmt: str | None = None) -> None:
    """Write rows as CSV (``classes`` as a Python-list string, as the official files) or JSONL.

    ``path`` of ``None`` or ``"-"`` writes to standard output; the format follows the suffix,
    else ``fmt`` (default ``jsonl``).
    """
    to_stdout = path is None or str(path) == "-"
    fmt = fmt or ("jsonl" if to_stdout else ("csv" if Path(path).suffix.lower() == ".csv" else "jsonl"))
    if to_stdout:
        _write_records(dataset, sys.stdout, fmt)
        return
    with open(path, "w", encoding="utf-8", newline="") as handle:
        _write_records(dataset, handle, fmt)


def _write_records(dataset: Dataset, handle: TextIO, fmt: str) -> None:
    records = [row_to_record(row, dataset.task_type, classes_as_text=fmt == "csv") for row in dataset.rows]
    if fmt == "csv":
        writer = csv.DictWriter(handle, fieldnames=list(records[0]) if records else dataset.columns)
        writer.writeheader()
        writer.writerows(records)
    else:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def with_content_hash(dataset: Dataset) -> Dataset:
    """``dataset`` with ``content_sha256`` set to the hash of its JSONL text (what
    :func:`read_dataset` gives after :func:`write_dataset` to a ``.jsonl`` file); returns it."""
    buffer = io.StringIO()
    _write_records(dataset, buffer, "jsonl")
    dataset.content_sha256 = hashlib.sha256(buffer.getvalue().encode("utf-8")).hexdigest()
    return dataset
