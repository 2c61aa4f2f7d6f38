"""Prompt and label import on SQLite and PostgreSQL: counts, stable splits, provenance, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from core.errors import PrefloopError
from storage.db import session_scope
from storage.files import MAX_TEXT_CHARS
from storage.imports import assign_split, import_labels, import_prompts
from storage.models import (
    Annotator,
    AnnotatorKind,
    Candidate,
    Choice,
    Comparison,
    Judgment,
    ModelVersion,
    Prompt,
    Purpose,
    VersionKind,
    prompt_messages,
)
from storage.templates import render

REPO = Path(__file__).resolve().parent.parent
IDEAS = REPO / "data/youtube-titles/ideas.csv"
SEED_LABELS = REPO / "data/youtube-titles/idea-title_pairs-preferences.csv"
DPO_EN = REPO / "data/llamafactory-demo/dpo_en_demo.json"
TABLES = ("prompt", "model_version", "candidate", "comparison", "judgment", "annotator")


def table_counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"select count(*) from {t}")).scalar() for t in TABLES}


def splits(engine) -> dict[str, str]:
    with session_scope(engine) as s:
        return {p.text: p.split.value for p in s.exec(select(Prompt))}


def test_seed_ideas_give_114_prompts_about_ten_percent_eval_same_split_every_time(any_engine, engine):
    first = import_prompts(any_engine, IDEAS, column="Idea", template="youtube-title")
    assert first.added == 114 and first.duplicates == 0
    assert 5 <= first.by_split["eval"] <= 20 and first.by_split["train"] + first.by_split["eval"] == 114
    again = import_prompts(any_engine, IDEAS, column="Idea", template="youtube-title")
    assert (again.added, again.duplicates) == (0, 114)
    import_prompts(engine, IDEAS, column="Idea", template="youtube-title")  # another database, same split
    assert splits(any_engine) == splits(engine)
    with session_scope(any_engine) as s:
        prompt = s.exec(select(Prompt).where(Prompt.raw == "fine-tuning LLMs")).one()
    assert prompt.text == render("youtube-title", "fine-tuning LLMs")
    assert "**Video Idea**: fine-tuning LLMs\n\n" in prompt.text and prompt.template == "youtube-title"
    assert prompt.source == "ideas.csv"


def test_split_is_a_pure_function_of_the_normalised_text_and_share():
    assert assign_split("some idea") == assign_split("some idea")
    assert assign_split("some idea", eval_share=0.0).value == "train"
    assert assign_split("some idea", eval_share=1.0).value == "eval"
    shares = [assign_split(f"idea {i}").value == "eval" for i in range(4000)]
    assert 0.08 < sum(shares) / len(shares) < 0.12


def test_split_override_and_normalised_duplicates(engine, tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("Hello world\n\n  hello   WORLD \nSecond prompt\n", encoding="utf-8")
    result = import_prompts(engine, f, split="eval")
    assert (result.added, result.duplicates, result.by_split) == (2, 1, {"train": 0, "eval": 2})
    assert set(splits(engine).values()) == {"eval"}


def test_jsonl_prompts_with_system_and_strings(engine, tmp_path):
    f = tmp_path / "p.jsonl"
    rows = [{"prompt": "Write a haiku", "system": "Be brief."}, "Plain string prompt", {"text": "Text field"}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert import_prompts(engine, f).added == 3
    with session_scope(engine) as s:
        haiku = s.exec(select(Prompt).where(Prompt.text == "Write a haiku")).one()
    assert prompt_messages(haiku) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Write a haiku"},
    ]


def test_seed_labels_become_one_prompt_per_idea_with_provenance(any_engine):
    import_prompts(any_engine, IDEAS, column="Idea", template="youtube-title")
    result = import_labels(any_engine, SEED_LABELS, template="youtube-title")
    assert result.format == "pairs-csv" and result.rows == 1140
    assert result.prompts.added == 0  # every idea was already imported as a prompt: one prompt, not two
    assert (result.candidates_added, result.comparisons_added, result.judgments_added) == (570, 1140, 1140)
    counts = table_counts(any_engine)
    assert counts["prompt"] == 114 and counts["judgment"] == 1140
    with session_scope(any_engine) as s:
        annotator = s.exec(select(Annotator)).one()
        version = s.exec(select(ModelVersion)).one()
        comparisons = s.exec(select(Comparison)).all()
        choices = [j.choice for j in s.exec(select(Judgment))]
        # the CSV's first row: title_b_preferred = 1, so title_b is the chosen one
        row_prompt = s.exec(select(Prompt).where(Prompt.raw == "text embedding models")).one()
        cands = {c.id: c.text for c in s.exec(select(Candidate).where(Candidate.prompt_id == row_prompt.id))}
        judged = []
        for comp in s.exec(select(Comparison).where(Comparison.prompt_id == row_prompt.id)):
            j = s.exec(select(Judgment).where(Judgment.comparison_id == comp.id)).one()
            winner = comp.candidate_a_id if j.choice == Choice.a else comp.candidate_b_id
            loser = comp.candidate_b_id if j.choice == Choice.a else comp.candidate_a_id
            judged.append((cands[winner], cands[loser]))
    assert annotator.name == "imported:idea-title_pairs-preferences.csv"
    assert annotator.kind == AnnotatorKind.imported and annotator.token_hash is None
    assert version.name == annotator.name and version.kind == VersionKind.external
    assert all(c.purpose == Purpose.train and c.round_id is None for c in comparisons)
    assert all(c.candidate_a_id < c.candidate_b_id for c in comparisons)
    assert {Choice.a, Choice.b} == set(choices)
    assert (
        "Text Embedding Models: From Theory to Practice",
        "Top 3 Text Embedding Models Every Data Scientist Should Know",
    ) in judged


def test_reimporting_labels_adds_nothing_and_a_changed_label_supersedes(engine, tmp_path):
    f = tmp_path / "labels.csv"
    header = "idea,title_a,title_b,title_b_preferred\n"
    f.write_text(header + "cats,Cats A,Cats B,1\ncats,Cats A,Cats C,0\n", encoding="utf-8")
    import_labels(engine, f)
    again = import_labels(engine, f)
    assert (again.judgments_added, again.duplicates) == (0, 2)
    f.write_text(header + "cats,Cats A,Cats B,0\n", encoding="utf-8")  # the file's decision changed
    changed = import_labels(engine, f)
    assert (changed.revised, changed.judgments_added) == (1, 1)
    with session_scope(engine) as s:
        history = s.exec(select(Judgment).order_by(Judgment.id)).all()
        winners = [winner_text(s, j) for j in history]
    assert len(history) == 3 and history[0].superseded_at is not None
    assert winners == ["Cats B", "Cats A", "Cats A"]  # the old decision stays in the history
    assert [j.superseded_at is None for j in history] == [False, True, True]


def winner_text(session, judgment: Judgment) -> str:
    comp = session.get(Comparison, judgment.comparison_id)
    side = comp.candidate_a_id if judgment.choice == Choice.a else comp.candidate_b_id
    return session.get(Candidate, side).text


def test_sharegpt_import_keeps_system_and_multi_turn_history(any_engine):
    records = json.loads(DPO_EN.read_text(encoding="utf-8"))
    result = import_labels(any_engine, DPO_EN)
    assert result.format == "sharegpt" and result.rows == 300
    assert result.duplicates == 5  # the demo file repeats 5 records verbatim
    assert result.judgments_added == 295 and result.prompts.added == 295
    multi = next(r for r in records if len(r["conversations"]) > 3)
    with session_scope(any_engine) as s:
        prompt = s.exec(select(Prompt).where(Prompt.text == multi["conversations"][-1]["value"])).one()
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    assert prompt_messages(prompt) == [
        {"role": roles[m["from"]], "content": m["value"]} for m in multi["conversations"]
    ]


def test_alpaca_and_trl_formats_and_detection(engine, tmp_path):
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(
        json.dumps(
            [
                {
                    "instruction": "Translate",
                    "input": "bonjour",
                    "chosen": "hello",
                    "rejected": "bye",
                    "system": "You translate.",
                    "history": [["hi", "hello there"]],
                }
            ]
        ),
        encoding="utf-8",
    )
    trl = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "Say hi", "chosen": "Hi!", "rejected": "No."},
        {
            "prompt": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Say hi"}],
            "chosen": [{"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "assistant", "content": "Go away."}],
        },
    ]
    trl.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    assert import_labels(engine, alpaca).format == "alpaca"
    result = import_labels(engine, trl)
    assert result.format == "trl" and result.prompts.added == 2  # a system prompt makes a different prompt
    with session_scope(engine) as s:
        translate = s.exec(select(Prompt).where(Prompt.text == "Translate\nbonjour")).one()
    assert prompt_messages(translate) == [
        {"role": "system", "content": "You translate."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello there"},
        {"role": "user", "content": "Translate\nbonjour"},
    ]


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str, str]]:
    """name -> (file, kind of import, expected message start)."""
    header = "idea,title_a,title_b,title_b_preferred\n"
    jsonl_lines = [json.dumps({"prompt": f"p{i}", "chosen": "x", "rejected": "y"}) for i in range(1, 7)]
    files = {
        "missing_column": ("ideas.csv", "Name\nfoo\n", "prompts", "ideas.csv:1: field Idea: no such column"),
        "bad_json_line_7": (
            "l.jsonl",
            "\n".join([*jsonl_lines, '{"prompt": "p7",']),
            "labels",
            "l.jsonl:7: bad JSON",
        ),
        "empty_text": (
            "e.csv",
            header + "cats,A,B,1\n  ,A,B,0\n",
            "labels",
            "e.csv:3: field idea: empty text",
        ),
        "invalid_utf8": ("u.csv", None, "prompts", "u.csv:3: invalid UTF-8"),
        "one_megabyte": ("big.csv", None, "labels", "big.csv:3: field title_b: text is 1,000,000 characters"),
        "label_outside_set": (
            "v.csv",
            header + "cats,A,B,1\ncats,A,C,2\n",
            "labels",
            "v.csv:3: field title_b_preferred: '2'",
        ),
    }
    out = {}
    for name, (fname, content, kind, message) in files.items():
        path = tmp / fname
        if name == "invalid_utf8":
            path.write_bytes(b"Idea\ngood idea\nbad \xff idea\n")
        elif name == "one_megabyte":
            path.write_text(header + "cats,A,B,1\n" + f"cats,A,{'x' * 1_000_000},0\n", encoding="utf-8")
        else:
            path.write_text(content, encoding="utf-8")
        out[name] = (path, kind, message)
    return out


BAD_CASES = [
    "missing_column",
    "bad_json_line_7",
    "empty_text",
    "invalid_utf8",
    "one_megabyte",
    "label_outside_set",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_names_file_row_field_and_leaves_the_database_as_it_was(any_engine, tmp_path, case):
    small = tmp_path / "small" / "labels.csv"
    small.parent.mkdir()
    small.write_text("idea,title_a,title_b,title_b_preferred\ndogs,Dogs A,Dogs B,1\n", encoding="utf-8")
    import_labels(any_engine, small)  # a non-empty database
    before = table_counts(any_engine)
    path, kind, message = _bad_files(tmp_path)[case]
    with pytest.raises(PrefloopError) as err:
        if kind == "prompts":
            import_prompts(any_engine, path, column="Idea")
        else:
            import_labels(any_engine, path)
    line = str(err.value)
    assert line.startswith(str(path.parent) + "/" + message), line
    assert "\n" not in line and ";" in line  # one line that also says what to do
    assert table_counts(any_engine) == before


def test_a_bad_row_late_in_a_valid_file_rolls_everything_back(engine, tmp_path):
    rows = SEED_LABELS.read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "late.csv"
    broken.write_text("\n".join([*rows, "cats,A,A,1"]) + "\n", encoding="utf-8")  # same title twice
    with pytest.raises(PrefloopError, match=r"late.csv:1142: field title_b: same text"):
        import_labels(engine, broken)
    assert table_counts(engine) == dict.fromkeys(TABLES, 0)


def test_length_limit_is_documented_and_enforced_at_the_boundary(engine, tmp_path):
    ok, too_long = tmp_path / "ok.txt", tmp_path / "long.txt"
    ok.write_text("y" * MAX_TEXT_CHARS, encoding="utf-8")
    too_long.write_text("y" * (MAX_TEXT_CHARS + 1), encoding="utf-8")
    assert import_prompts(engine, ok).added == 1
    with pytest.raises(PrefloopError, match=r"long.txt:1: field line: text is 32,001 characters"):
        import_prompts(engine, too_long)


# U+2028/U+2029, form feed, \x1c-\x1e and \x85 are text, not line breaks (str.splitlines splits on them)
ODD_SEPARATORS = "\u2028\u2029\x0c\x1c\x1d\x1e\x85"


def test_unicode_line_separators_inside_cells_round_trip_through_csv_jsonl_and_txt(engine, tmp_path):
    odd = f"a{ODD_SEPARATORS}b"
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(
        f'idea,title_a,title_b,title_b_preferred\r\n"cats {odd}",A{odd},"B\r\nB",1\r\n', encoding="utf-8"
    )
    trl = tmp_path / "pairs.jsonl"
    row = {"prompt": f"dogs {odd}", "chosen": f"C{odd}", "rejected": "D"}
    trl.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    txt = tmp_path / "prompts.txt"
    txt.write_text(f"first {odd}\r\nsecond\n", encoding="utf-8")
    assert import_labels(engine, csv_file).rows == 1
    assert import_labels(engine, trl).rows == 1
    assert import_prompts(engine, txt).added == 2
    with session_scope(engine) as s:
        prompts = {p.text for p in s.exec(select(Prompt))}
        texts = {c.text for c in s.exec(select(Candidate))}
    assert prompts == {f"cats {odd}", f"dogs {odd}", f"first {odd}", "second"}
    assert texts == {f"A{odd}", "B\r\nB", f"C{odd}", "D"}  # a quoted CRLF stays in the cell


def test_exported_trl_file_with_line_separators_imports_again_unchanged(engine, sqlite_url, tmp_path):
    from storage.db import make_engine, migrate
    from storage.exports import export_trl

    odd = f"x{ODD_SEPARATORS}y"
    src = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"p{i} {odd}", "chosen": f"c{i} {odd}", "rejected": f"r{i}"} for i in range(6)]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    import_labels(engine, src, split="train")
    export_trl(engine, tmp_path / "out", validation_share=0.0, seed=0)
    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    migrate(other)
    assert import_labels(other, tmp_path / "out" / "train.jsonl").rows == 6
    with session_scope(other) as s:
        assert {c.text for c in s.exec(select(Candidate))} == {
            *(f"c{i} {odd}" for i in range(6)),
            *(f"r{i}" for i in range(6)),
        }
    other.dispose()


TRL_ROW = '{"prompt": "p", "chosen": "a", "rejected": "b"'


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("deep.jsonl", TRL_ROW + "}\n" + "[" * 100_000 + "\n", "deep.jsonl:2: JSON nested too deeply"),
        (
            "deep.json",
            "[\n" + TRL_ROW + ',\n"x": ' + "[" * 100_000 + "]}]",
            "deep.json:3: JSON nested too deeply",
        ),
        ("digits.jsonl", TRL_ROW + ', "n": ' + "9" * 5000 + "}\n", "digits.jsonl:1: a number with more than"),
        ("digits.json", "[" + TRL_ROW + ',\n"n":\n' + "9" * 5000 + "}]", "digits.json:3: a number with more"),
    ],
)
def test_deep_nesting_and_huge_integers_are_the_one_line_error(engine, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PrefloopError) as err:
        import_labels(engine, path, format="trl")
    line = str(err.value)
    assert line.startswith(f"{tmp_path}/{message}"), line
    assert "\n" not in line and ";" in line
    assert table_counts(engine) == dict.fromkeys(TABLES, 0)


def test_two_files_with_the_same_name_never_revise_each_other(any_engine, tmp_path):
    header = "idea,title_a,title_b,title_b_preferred\n"
    first, second = tmp_path / "a" / "labels.csv", tmp_path / "b" / "labels.csv"
    for path, flag in ((first, "1"), (second, "0")):  # the same pair, opposite decisions
        path.parent.mkdir()
        path.write_text(header + f"cats,Cats A,Cats B,{flag}\n", encoding="utf-8")
    import_labels(any_engine, first)
    before = table_counts(any_engine)
    with pytest.raises(PrefloopError) as err:
        import_labels(any_engine, second)
    assert str(err.value) == (
        f"{second}: the labels source 'labels.csv' holds the labels of {first.resolve()}; pass --source NAME "
        "to import this file as its own source (or --source labels.csv to revise those)"
    )
    assert table_counts(any_engine) == before
    result = import_labels(any_engine, second, source="team-b")
    assert (result.annotator, result.judgments_added, result.revised) == ("imported:team-b", 1, 0)
    assert import_labels(any_engine, first).duplicates == 1  # its own file again: still its labels
    with session_scope(any_engine) as s:
        current = set()
        for j, a, comp in s.exec(
            select(Judgment, Annotator, Comparison)
            .join(Annotator, Annotator.id == Judgment.annotator_id)
            .join(Comparison, Comparison.id == Judgment.comparison_id)
            .where(Judgment.superseded_at.is_(None))
        ):
            chosen = comp.candidate_a_id if j.choice == Choice.a else comp.candidate_b_id
            current.add((a.name, a.origin, s.get(Candidate, chosen).text))
    assert current == {
        ("imported:labels.csv", str(first.resolve()), "Cats B"),
        ("imported:team-b", str(second.resolve()), "Cats A"),
    }
