"""User files -> validated records (no database): prompt lists and preference-label files.

Every value is checked before anything is written, so a bad row fails the whole import with one line
"FILE:ROW: field X: what is wrong; what to do". ROW is the line for CSV/JSONL/text files and the 1-based
record number for JSON arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import PrefloopError
from storage.files import (
    checked_text,
    csv_records,
    json_document,
    jsonl_records,
    read_text,
    text_lines,
    where,
)
from storage.models import prompt_key
from storage.templates import render, template_system

LABEL_FORMATS = ("pairs-csv", "sharegpt", "alpaca", "trl")
PAIRS_CSV_COLUMNS = ["idea", "title_a", "title_b", "title_b_preferred"]  # the seed's labels file
SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant"}  # LLaMA-Factory's default tags


@dataclass(frozen=True)
class PromptRecord:
    row: int
    text: str  # what the model is given (after the template)
    raw: str | None = None  # the input before the template, if one was applied
    system: str | None = None
    history: tuple[tuple[str, str], ...] = ()  # earlier (role, content) turns of a conversation

    @property
    def key(self) -> str:
        return prompt_key(self.text, self.system, self.history_messages())

    def history_messages(self) -> list[dict[str, str]] | None:
        return [{"role": r, "content": c} for r, c in self.history] or None


@dataclass(frozen=True)
class LabelRecord:
    """One human decision: for ``prompt``, ``chosen`` was preferred to ``rejected``."""

    row: int
    prompt: PromptRecord
    chosen: str
    rejected: str


def make_prompt(
    raw: str,
    row: int,
    template: str | None,
    system: str | None = None,
    history: tuple[tuple[str, str], ...] = (),
) -> PromptRecord:
    if template is None:
        return PromptRecord(row=row, text=raw, system=system, history=history)
    system = system if system is not None else template_system(template)
    return PromptRecord(row=row, text=render(template, raw), raw=raw, system=system, history=history)


# --- prompt files --------------------------------------------------------------------------------------


def parse_prompt_file(
    path: Path, *, column: str | None = None, template: str | None = None
) -> list[PromptRecord]:
    """One prompt per row of a CSV (``column``), JSONL/JSON (strings or objects) or text file (lines)."""
    text = read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = csv_records(path, text, [column] if column else [])
        return [_prompt_from_csv(path, n, row, column, template) for n, row in rows]
    if suffix in (".jsonl", ".json"):
        items = jsonl_records(path, text) if suffix == ".jsonl" else _json_list(path, text)
        return [_prompt_from_json(path, n, item, column, template) for n, item in items]
    if suffix in (".txt", ""):
        return [
            make_prompt(checked_text(line, path, n, "line"), n, template)
            for n, line in text_lines(text)
            if line.strip()
        ]
    raise PrefloopError(f"{path}: unsupported file type {suffix!r}; use .csv, .jsonl, .json or .txt")


def _prompt_from_csv(
    path: Path, n: int, row: dict[str, str], column: str | None, template: str | None
) -> PromptRecord:
    if column is None:
        if len(row) != 1:
            raise PrefloopError(
                f"{where(path, 1)}: {len(row)} columns; pass --column NAME to pick the prompt column"
            )
        column = next(iter(row))
    return make_prompt(checked_text(row[column], path, n, column), n, template)


def _prompt_from_json(
    path: Path, n: int, item: Any, column: str | None, template: str | None
) -> PromptRecord:
    if isinstance(item, str):
        return make_prompt(checked_text(item, path, n, "prompt"), n, template)
    if not isinstance(item, dict):
        raise PrefloopError(
            f"{where(path, n)}: expected a string or an object, got {type(item).__name__}; fix the row"
        )
    field = column or next((k for k in ("prompt", "text") if k in item), "prompt")
    if field not in item:
        raise PrefloopError(f"{where(path, n, field)}: missing; add it or pass --column NAME")
    system = checked_text(item["system"], path, n, "system") if item.get("system") is not None else None
    return make_prompt(checked_text(item[field], path, n, field), n, template, system=system)


def _json_list(path: Path, text: str) -> list[tuple[int, Any]]:
    doc = json_document(path, text)
    if not isinstance(doc, list):
        raise PrefloopError(
            f"{path}: expected a JSON array of records, got {type(doc).__name__}; wrap them in [...]"
        )
    return list(enumerate(doc, start=1))


# --- label files ---------------------------------------------------------------------------------------


def detect_label_format(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "pairs-csv"
    if suffix == ".jsonl":
        return "trl"
    if suffix == ".json":
        doc = json_document(path, text)
        first = doc[0] if isinstance(doc, list) and doc else None
        if isinstance(first, dict):
            for field, fmt in (("conversations", "sharegpt"), ("instruction", "alpaca"), ("prompt", "trl")):
                if field in first:
                    return fmt
    raise PrefloopError(f"{path}: cannot tell the labels format; pass --format ({'|'.join(LABEL_FORMATS)})")


def parse_label_file(
    path: Path, *, format: str | None = None, template: str | None = None
) -> tuple[str, list[LabelRecord]]:
    """(format, [LabelRecord]) for a labels file; ``format`` None detects it from the name and content."""
    text = read_text(path)
    fmt = format or detect_label_format(path, text)
    if fmt == "pairs-csv":
        records = [
            _label_from_pairs_csv(path, n, row, template)
            for n, row in csv_records(path, text, PAIRS_CSV_COLUMNS)
        ]
    elif fmt in ("sharegpt", "alpaca", "trl"):
        items = jsonl_records(path, text) if path.suffix.lower() == ".jsonl" else _json_list(path, text)
        parse = {"sharegpt": _label_from_sharegpt, "alpaca": _label_from_alpaca, "trl": _label_from_trl}[fmt]
        records = [parse(path, n, _object(path, n, item), template) for n, item in items]
    else:
        raise PrefloopError(f"unknown labels format {fmt!r}; use one of {', '.join(LABEL_FORMATS)}")
    return fmt, records


def _object(path: Path, n: int, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise PrefloopError(
            f"{where(path, n)}: expected an object, got {type(item).__name__}; fix the record"
        )
    return item


def _field(path: Path, n: int, item: dict[str, Any], name: str) -> Any:
    if name not in item:
        raise PrefloopError(f"{where(path, n, name)}: missing; every record needs it")
    return item[name]


def _pair(path: Path, n: int, prompt: PromptRecord, chosen: str, rejected: str, field: str) -> LabelRecord:
    if chosen == rejected:
        raise PrefloopError(
            f"{where(path, n, field)}: same text as the other answer; a pair needs two answers"
        )
    return LabelRecord(row=n, prompt=prompt, chosen=chosen, rejected=rejected)


def _label_from_pairs_csv(path: Path, n: int, row: dict[str, str], template: str | None) -> LabelRecord:
    prompt = make_prompt(checked_text(row["idea"], path, n, "idea"), n, template)
    title_a = checked_text(row["title_a"], path, n, "title_a")
    title_b = checked_text(row["title_b"], path, n, "title_b")
    flag = row["title_b_preferred"].strip()
    if flag not in ("0", "1"):
        raise PrefloopError(
            f"{where(path, n, 'title_b_preferred')}: {flag!r} is not 0 or 1 (1 = title_b chosen); "
            "fix the value"
        )
    chosen, rejected = (title_b, title_a) if flag == "1" else (title_a, title_b)
    return _pair(path, n, prompt, chosen, rejected, "title_b")


def _conversation(
    path: Path,
    n: int,
    field: str,
    turns: list[tuple[str, Any]],
    template: str | None,
    system: str | None = None,
) -> PromptRecord:
    """[system], then user/assistant alternating, ending with the user turn the answers reply to."""
    if turns and turns[0][0] == "system":
        if system is not None:
            raise PrefloopError(f"{where(path, n, field)}: two system prompts; keep one")
        system = checked_text(turns[0][1], path, n, f"{field}[0]")
        turns = turns[1:]
    if not turns:
        raise PrefloopError(f"{where(path, n, field)}: no user message; the prompt needs one")
    checked: list[tuple[str, str]] = []
    for i, (role, content) in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise PrefloopError(
                f"{where(path, n, field)}: turn {i + 1} is {role!r}, expected {expected!r} "
                "(user and assistant alternate and the last turn is the user's)"
            )
        checked.append((role, checked_text(content, path, n, f"{field}[{i}]")))
    if checked[-1][0] != "user":
        raise PrefloopError(
            f"{where(path, n, field)}: the last turn must be the user's; remove the trailing answer"
        )
    *history, (_, last) = checked
    return make_prompt(last, n, template, system=system, history=tuple(history))


def _messages(
    path: Path, n: int, field: str, value: Any, role_key: str, content_key: str
) -> list[tuple[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise PrefloopError(f"{where(path, n, field)}: expected a list of messages; fix the record")
    out = []
    for m in value:
        if role_key not in m or content_key not in m:
            raise PrefloopError(
                f"{where(path, n, field)}: a message needs {role_key!r} and {content_key!r}; fix the record"
            )
        out.append((m[role_key], m[content_key]))
    return out


def _sharegpt_role(path: Path, n: int, field: str, role: Any) -> str:
    if role not in SHAREGPT_ROLES:
        raise PrefloopError(
            f"{where(path, n, field)}: role {role!r} is not supported; use {', '.join(SHAREGPT_ROLES)}"
        )
    return SHAREGPT_ROLES[role]


def _label_from_sharegpt(path: Path, n: int, item: dict[str, Any], template: str | None) -> LabelRecord:
    """LLaMA-Factory ranking: conversations [{from, value}], chosen/rejected {from: gpt, value}."""
    raw = _messages(path, n, "conversations", _field(path, n, item, "conversations"), "from", "value")
    turns = [(_sharegpt_role(path, n, "conversations", r), c) for r, c in raw]
    system = checked_text(item["system"], path, n, "system") if item.get("system") else None
    prompt = _conversation(path, n, "conversations", turns, template, system)
    answers = []
    for field in ("chosen", "rejected"):
        value = _field(path, n, item, field)
        messages = _messages(path, n, field, [value] if isinstance(value, dict) else value, "from", "value")
        if len(messages) != 1 or _sharegpt_role(path, n, field, messages[0][0]) != "assistant":
            raise PrefloopError(f"{where(path, n, field)}: expected one message from 'gpt'; fix the record")
        content = messages[0][1]
        answers.append(checked_text(content, path, n, field))
    return _pair(path, n, prompt, answers[0], answers[1], "rejected")


def _label_from_alpaca(path: Path, n: int, item: dict[str, Any], template: str | None) -> LabelRecord:
    """LLaMA-Factory alpaca ranking: instruction [+ input], optional system and history [[q, a], ...]."""
    instruction = checked_text(_field(path, n, item, "instruction"), path, n, "instruction")
    query = item.get("input") or ""
    user = f"{instruction}\n{checked_text(query, path, n, 'input')}" if query else instruction
    history = item.get("history") or []
    if not isinstance(history, list) or not all(isinstance(h, list) and len(h) == 2 for h in history):
        raise PrefloopError(
            f"{where(path, n, 'history')}: expected a list of [question, answer] pairs; fix the record"
        )
    turns = [t for q, a in history for t in (("user", q), ("assistant", a))] + [("user", user)]
    system = checked_text(item["system"], path, n, "system") if item.get("system") else None
    prompt = _conversation(path, n, "instruction", turns, template, system)
    chosen = checked_text(_field(path, n, item, "chosen"), path, n, "chosen")
    rejected = checked_text(_field(path, n, item, "rejected"), path, n, "rejected")
    return _pair(path, n, prompt, chosen, rejected, "rejected")


def _label_from_trl(path: Path, n: int, item: dict[str, Any], template: str | None) -> LabelRecord:
    """TRL preference rows: prompt/chosen/rejected as strings or as conversational message lists."""
    value = _field(path, n, item, "prompt")
    if isinstance(value, str):
        prompt = make_prompt(checked_text(value, path, n, "prompt"), n, template)
    else:
        prompt = _conversation(
            path, n, "prompt", _messages(path, n, "prompt", value, "role", "content"), template
        )
    answers = []
    for field in ("chosen", "rejected"):
        value = _field(path, n, item, field)
        if not isinstance(value, str):
            messages = _messages(path, n, field, value, "role", "content")
            if len(messages) != 1 or messages[0][0] != "assistant":
                raise PrefloopError(
                    f"{where(path, n, field)}: expected one assistant message; fix the record"
                )
            value = messages[0][1]
        answers.append(checked_text(value, path, n, field))
    return _pair(path, n, prompt, answers[0], answers[1], "rejected")
