"""Malformed input through the real CLI: each case exits 1 with one line naming the problem, writes nothing.

Every case runs ``prefloop`` as an operator would (a subprocess) against one SQLite file that already
holds data; after each, every table has exactly the rows it had before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.db import make_engine

pytestmark = pytest.mark.fault

REPO = Path(__file__).resolve().parents[2]
TABLES = ("prompt", "model_version", "candidate", "comparison", "judgment", "annotator", "lease")
PAIRS_HEADER = "idea,title_a,title_b,title_b_preferred\n"
DEEP = "[" * 100_000
HUGE = "9" * 5000


def jsonl(*rows: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def battle(**fields: object) -> dict:
    row = {"model_a": "m1", "model_b": "m2", "winner": "model_a", "judge": "j", "prompt": "p"}
    return {**row, "response_a": "ra", "response_b": "rb", **fields}


TRL_OK = {"prompt": "p", "chosen": "a", "rejected": "b"}
SHAREGPT_OK = {
    "conversations": [{"from": "human", "value": "q"}],
    "chosen": {"from": "gpt", "value": "a"},
    "rejected": {"from": "gpt", "value": "b"},
}


@dataclass(frozen=True)
class Case:
    id: str
    command: tuple[str, ...]  # prefloop arguments; "{file}" is the input file
    file: str
    content: str | bytes | None  # None: the path is not written
    message: str  # what the line says after "error: " and the file's path ("" for no path)


def case(id: str, command: str, file: str, content: str | bytes | None, message: str) -> Case:
    return Case(id, tuple(command.split()), file, content, message)


PROMPTS = "prompts import {file}"
IDEAS = "prompts import {file} --column Idea"
LABELS = "labels import {file}"
ARENA = "judgments import {file}"

CASES = [
    # prompt lists
    case("csv-missing-column", IDEAS, "p.csv", "Name\nfoo\n", ":1: field Idea: no such column"),
    case("csv-more-cells", IDEAS, "p.csv", "Idea\nok\na,b\n", ":3: more cells than header columns"),
    case(
        "csv-fewer-cells", IDEAS, "p.csv", "x,Idea\na,b\nc\n", ":3: field Idea: fewer cells than the header"
    ),
    case("csv-empty-cell", IDEAS, "p.csv", "Idea\nok\n   \n", ":3: field Idea: empty text"),
    case("csv-invalid-utf8", IDEAS, "p.csv", b"Idea\nok\nbad \xff\n", ":3: invalid UTF-8"),
    case("csv-nul", IDEAS, "p.csv", "Idea\nok\nn\x00ul\n", ":3: field Idea: contains a NUL character"),
    case("csv-too-long", IDEAS, "p.csv", "Idea\n" + "y" * 32_001 + "\n", ":2: field Idea: text is 32,001"),
    case(
        "csv-unclosed-quote", IDEAS, "p.csv", 'Idea\nok\n"open\nmore\n', ":3: a quoted cell is never closed"
    ),
    case("csv-text-after-quote", IDEAS, "p.csv", 'Idea\nok\n"q"x\n', ":3: bad CSV (',' expected after '\"')"),
    case("csv-two-columns", PROMPTS, "p.csv", "a,b\n1,2\n", ":1: 2 columns; pass --column NAME"),
    case("jsonl-bad-json", PROMPTS, "p.jsonl", '"ok"\n{"prompt": \n', ":2: bad JSON"),
    case("jsonl-number-row", PROMPTS, "p.jsonl", '"ok"\n42\n', ":2: expected a string or an object, got int"),
    case("jsonl-missing-field", PROMPTS, "p.jsonl", jsonl({"title": "x"}), ":1: field prompt: missing"),
    case("jsonl-prompt-number", PROMPTS, "p.jsonl", jsonl({"prompt": 7}), ":1: field prompt: expected text"),
    case("jsonl-system-list", PROMPTS, "p.jsonl", jsonl({"prompt": "p", "system": []}), ":1: field system"),
    case("jsonl-deep", PROMPTS, "p.jsonl", '"ok"\n' + DEEP + "\n", ":2: JSON nested too deeply"),
    case("jsonl-huge-int", PROMPTS, "p.jsonl", f'"ok"\n{HUGE}\n', ":2: a number with more than 4,300 digits"),
    case("json-not-array", PROMPTS, "p.json", '{"prompt": "p"}', ": expected a JSON array of records"),
    case("json-deep", PROMPTS, "p.json", '[\n"ok",\n' + DEEP, ":3: JSON nested too deeply"),
    case("json-bad", PROMPTS, "p.json", '["ok",\n"unterminated]', ":2: bad JSON"),
    case("json-huge-int", PROMPTS, "p.json", f'["ok",\n{HUGE}]', ":2: a number with more than 4,300"),
    case("txt-too-long", PROMPTS, "p.txt", "ok\n" + "y" * 40_000 + "\n", ":2: field line: text is 40,000"),
    case("txt-invalid-utf8", PROMPTS, "p.txt", b"ok\n\xc3\x28\n", ":2: invalid UTF-8"),
    case("unsupported-type", PROMPTS, "p.xml", "<p/>", ": unsupported file type '.xml'"),
    case("missing-file", PROMPTS, "nothing.txt", None, ": cannot read: No such file or directory"),
    case("bad-split", PROMPTS + " --split test", "p.txt", "ok\n", "--split 'test'"),
    # label files
    case("pairs-flag-2", LABELS, "l.csv", PAIRS_HEADER + "c,A,B,1\nc,A,C,2\n", ":3: field title_b_preferred"),
    case("pairs-same-title", LABELS, "l.csv", PAIRS_HEADER + "c,A,A,1\n", ":2: field title_b: same text"),
    case("pairs-no-flag", LABELS, "l.csv", "idea,title_a,title_b\nc,A,B\n", ":1: field title_b_preferred"),
    case(
        "pairs-fewer-cells", LABELS, "l.csv", PAIRS_HEADER + "c,A,B\n", ":2: field title_b_preferred: fewer"
    ),
    case("pairs-empty-idea", LABELS, "l.csv", PAIRS_HEADER + ",A,B,1\n", ":2: field idea: empty text"),
    case(
        "sharegpt-not-list",
        LABELS,
        "l.json",
        json.dumps([{**SHAREGPT_OK, "conversations": "q"}]),
        ":1: field conversations: expected a list of messages",
    ),
    case(
        "sharegpt-bad-role",
        LABELS,
        "l.json",
        json.dumps([{**SHAREGPT_OK, "conversations": [{"from": "bot", "value": "q"}]}]),
        ":1: field conversations: role 'bot' is not supported",
    ),
    case(
        "sharegpt-ends-with-answer",
        LABELS,
        "l.json",
        json.dumps(
            [
                {
                    **SHAREGPT_OK,
                    "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
                }
            ]
        ),
        ":1: field conversations: the last turn must be the user's",
    ),
    case(
        "sharegpt-chosen-by-human",
        LABELS,
        "l.json",
        json.dumps([SHAREGPT_OK, {**SHAREGPT_OK, "chosen": {"from": "human", "value": "a"}}]),
        ":2: field chosen: expected one message from 'gpt'",
    ),
    case(
        "sharegpt-two-systems",
        LABELS,
        "l.json",
        json.dumps(
            [
                {
                    **SHAREGPT_OK,
                    "system": "s",
                    "conversations": [{"from": "system", "value": "t"}, {"from": "human", "value": "q"}],
                }
            ]
        ),
        ":1: field conversations: two system prompts",
    ),
    case(
        "alpaca-no-instruction",
        LABELS + " --format alpaca",
        "l.json",
        json.dumps([{"input": "x", "chosen": "a", "rejected": "b"}]),
        ":1: field instruction: missing",
    ),
    case(
        "alpaca-bad-history",
        LABELS,
        "l.json",
        json.dumps([{"instruction": "i", "history": [["q"]], "chosen": "a", "rejected": "b"}]),
        ":1: field history: expected a list of [question, answer] pairs",
    ),
    case(
        "trl-no-rejected",
        LABELS,
        "l.jsonl",
        jsonl(TRL_OK, {"prompt": "p", "chosen": "a"}),
        ":2: field rejected: missing",
    ),
    case(
        "trl-chosen-by-user",
        LABELS,
        "l.jsonl",
        jsonl({**TRL_OK, "chosen": [{"role": "user", "content": "a"}]}),
        ":1: field chosen: expected one assistant message",
    ),
    case(
        "trl-message-no-content",
        LABELS,
        "l.jsonl",
        jsonl({**TRL_OK, "prompt": [{"role": "user"}]}),
        ":1: field prompt: a message needs 'role' and 'content'",
    ),
    case("trl-row-is-list", LABELS, "l.jsonl", jsonl(TRL_OK, [1, 2]), ":2: expected an object, got list"),
    case("trl-deep", LABELS, "l.jsonl", jsonl(TRL_OK) + DEEP + "\n", ":2: JSON nested too deeply"),
    case("trl-huge-int", LABELS, "l.jsonl", jsonl(TRL_OK) + f'{{"n": {HUGE}}}\n', ":2: a number with more"),
    case(
        "labels-unknown-format", LABELS, "l.json", json.dumps([{"q": 1}]), ": cannot tell the labels format"
    ),
    case("labels-bad-format-flag", LABELS + " --format xml", "l.csv", PAIRS_HEADER, "--format 'xml'"),
    case(
        "labels-empty-source", LABELS + " --source=", "l.csv", PAIRS_HEADER + "c,A,B,1\n", "--source: empty"
    ),
    case(
        "labels-same-name-elsewhere",
        LABELS,
        "other/labels.csv",
        PAIRS_HEADER + "c,A,B,0\n",
        ": the labels source",
    ),
    # Arena battles
    case("arena-bad-winner", ARENA, "b.jsonl", jsonl(battle(winner="draw")), ":1: field winner: 'draw'"),
    case("arena-same-models", ARENA, "b.jsonl", jsonl(battle(model_b="m1")), ":1: field model_b: same model"),
    case("arena-empty", ARENA, "b.jsonl", "\n\n", ": no valid battles"),
    case(
        "arena-no-judge",
        ARENA,
        "b.jsonl",
        jsonl(battle(), battle(judge=None)),
        ":2: field judge: expected text",
    ),
    case(
        "arena-multi-turn",
        ARENA,
        "b.jsonl",
        jsonl(
            {
                **{k: v for k, v in battle().items() if k not in ("prompt", "response_a", "response_b")},
                "conversation_a": [{"role": "user", "content": "q"}] * 3,
                "conversation_b": [],
            }
        ),
        ":1: field conversation_a: expected one user and one assistant message",
    ),
    case("arena-deep", ARENA, "b.jsonl", DEEP + "\n", ":1: JSON nested too deeply"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A database that already holds prompts, labels (from ``labels.csv``) and an Arena import."""
    root = tmp_path_factory.mktemp("malformed")
    env = {
        **os.environ,
        "PREFLOOP_DB": f"sqlite:///{root / 'prefloop.db'}",
    }
    (root / "labels.csv").write_text(PAIRS_HEADER + "c,A,B,1\n", encoding="utf-8")
    (root / "b.jsonl").write_text(jsonl(battle()), encoding="utf-8")
    (root / "p.txt").write_text("a prompt\n", encoding="utf-8")
    for args in (
        ("prompts", "import", "p.txt"),
        ("labels", "import", "labels.csv"),
        ("judgments", "import", "b.jsonl"),
    ):
        subprocess.run(
            [sys.executable, "-m", "prefloop.cli", *args], cwd=root, env=env, check=True, capture_output=True
        )
    return root, env


def counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}
    finally:
        engine.dispose()


def test_the_table_has_at_least_40_distinct_cases() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_malformed_input_exits_1_with_one_line_and_changes_nothing(project, c: Case) -> None:
    root, env = project
    work = root / c.id
    work.mkdir()
    path = work / c.file
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(c.content, bytes):
        path.write_bytes(c.content)
    elif c.content is not None:
        path.write_text(c.content, encoding="utf-8")
    before = counts(env["PREFLOOP_DB"])
    args = [a.replace("{file}", str(path)) for a in c.command]
    proc = subprocess.run(
        [sys.executable, "-m", "prefloop.cli", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(lines) == 1, proc.stderr  # no traceback, no second line
    expected = f"error: {path}{c.message}" if c.message.startswith(":") else f"error: {c.message}"
    assert lines[0].startswith(expected), lines[0]
    assert ";" in lines[0] or ": use " in lines[0]  # it also says what to do
    assert counts(env["PREFLOOP_DB"]) == before
