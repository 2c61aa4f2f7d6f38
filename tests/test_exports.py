"""Exports: majority vote, the train/eval wall, split by prompt, determinism, LLaMA-Factory round trip."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlmodel import select

from storage.aggregate import aggregate
from storage.db import session_scope
from storage.exports import export_judgments, export_llamafactory, export_trl, validation_prompt_ids
from storage.imports import import_labels, import_prompts
from storage.models import AnnotatorKind, Choice, Judgment, Prompt, Purpose, Split, VersionKind, utcnow
from storage.repo import (
    get_or_create_annotator,
    get_or_create_candidate,
    get_or_create_comparison,
    get_or_create_version,
)
from storage.templates import template_system

REPO = Path(__file__).resolve().parent.parent
IDEAS = REPO / "data/youtube-titles/ideas.csv"
SEED_LABELS = REPO / "data/youtube-titles/idea-title_pairs-preferences.csv"
LF_DEMO = REPO / "data/llamafactory-demo"

A, B, TIE, BAD, SKIP = Choice.a, Choice.b, Choice.tie, Choice.both_bad, Choice.skip


@pytest.mark.parametrize(
    ("votes", "outcome"),
    [
        ([], "unjudged"),
        ([A], "a"),
        ([B, B, A], "b"),
        ([A, B], "no_majority"),
        ([A, B, TIE], "no_majority"),
        ([TIE], "tie"),
        ([BAD, BAD, A], "both_bad"),
        ([SKIP, SKIP], "skip"),
        ([SKIP, SKIP, B], "b"),  # a skip is "cannot judge", not a vote
        ([TIE, TIE, A, B], "tie"),
    ],
)
def test_majority_aggregation(votes, outcome):
    assert aggregate(votes) == outcome


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def user_text(row: dict) -> str:
    return row["prompt"][-1]["content"]


def test_done_when_seed_labels_export_only_train_prompts_split_by_prompt(any_engine, tmp_path):
    """The issue's check: 114 ideas, ~10% eval; 1,140 labels -> TRL export without the eval prompts."""
    import_prompts(any_engine, IDEAS, column="Idea", template="youtube-title")
    import_labels(any_engine, SEED_LABELS, template="youtube-title")
    with session_scope(any_engine) as s:
        eval_texts = {p.text for p in s.exec(select(Prompt).where(Prompt.split == Split.eval))}
    assert 5 <= len(eval_texts) <= 20
    result = export_trl(any_engine, tmp_path / "out", validation_share=0.1, seed=0)
    # every seed idea has 10 labelled pairs: the eval prompts' pairs are left out and counted
    assert result.dropped == {"eval_prompt": 10 * len(eval_texts)}
    assert result.n_train + result.n_validation + 10 * len(eval_texts) == 1140
    train, validation = read_jsonl(result.paths["train"]), read_jsonl(result.paths["validation"])
    assert (len(train), len(validation)) == (result.n_train, result.n_validation)
    train_prompts, validation_prompts = {user_text(r) for r in train}, {user_text(r) for r in validation}
    assert not train_prompts & validation_prompts
    assert not (train_prompts | validation_prompts) & eval_texts
    assert len(validation_prompts) == result.n_validation_prompts == round(0.1 * (114 - len(eval_texts)))
    row = train[0]
    # the youtube-title template's system message travels with the prompt into the training data
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["prompt"][0]["content"] == template_system("youtube-title")
    assert row["prompt"][1]["content"].startswith("Given the")
    assert [m["role"] for m in row["chosen"] + row["rejected"]] == ["assistant", "assistant"]
    digest = hashlib.sha256(result.paths["train"].read_bytes() + result.paths["validation"].read_bytes())
    assert result.data_hash == digest.hexdigest()


def test_export_is_byte_identical_and_the_dataset_dict_matches_the_files(engine, tmp_path):
    from datasets import load_from_disk

    import_labels(engine, SEED_LABELS, template="youtube-title", split="train")
    first = export_trl(engine, tmp_path / "one", validation_share=0.2, seed=3)
    second = export_trl(engine, tmp_path / "one", validation_share=0.2, seed=3)  # overwrites in place
    other = export_trl(engine, tmp_path / "two", validation_share=0.2, seed=3)
    assert first.data_hash == second.data_hash == other.data_hash
    for name in ("train", "validation"):
        assert first.paths[name].read_bytes() == other.paths[name].read_bytes()
    dataset = load_from_disk(str(first.paths["dataset"]))
    assert set(dataset) == {"train", "validation"}
    assert dataset["train"].to_list() == read_jsonl(first.paths["train"])
    assert dataset["validation"].to_list() == read_jsonl(first.paths["validation"])
    assert first.n_validation_prompts == round(0.2 * 114)
    assert not list(tmp_path.glob("one/.*"))  # no temporary leftovers
    reseeded = export_trl(engine, tmp_path / "three", validation_share=0.2, seed=4)
    assert reseeded.data_hash != first.data_hash  # the seed picks other validation prompts


def test_validation_prompt_choice_is_stable_and_never_takes_everything():
    prompts = [
        Prompt(id=i, text=f"p{i}", normalized_hash=f"{i:064x}", split=Split.train) for i in range(1, 11)
    ]
    picked = validation_prompt_ids(prompts, 0.3, seed=0)
    assert len(picked) == 3 and picked == validation_prompt_ids(list(reversed(prompts)), 0.3, seed=0)
    assert validation_prompt_ids(prompts, 0.0, seed=0) == set()
    assert len(validation_prompt_ids(prompts[:2], 0.9, seed=0)) == 1
    assert validation_prompt_ids(prompts[:1], 0.5, seed=0) == set()


def test_several_annotators_majority_current_judgments_and_every_exclusion_counted(any_engine, tmp_path):
    """One prompt, six pairs, three annotators; a revised (superseded) vote no longer counts."""
    with session_scope(any_engine) as s:
        prompt = Prompt(text="idea", normalized_hash="f" * 64, split=Split.train)
        held_out = Prompt(text="held out idea", normalized_hash="e" * 64, split=Split.eval)
        s.add(prompt)
        s.add(held_out)
        s.flush()
        version = get_or_create_version(s, "base", VersionKind.base)
        cands = [get_or_create_candidate(s, prompt, version, f"title {i}")[0] for i in range(5)]
        eval_cands = [get_or_create_candidate(s, held_out, version, f"other {i}")[0] for i in range(2)]
        people = [get_or_create_annotator(s, name) for name in ("ann", "bob", "cy")]
        bot = get_or_create_annotator(s, "sim", kind=AnnotatorKind.simulated)

        def judge(comp, votes, superseded=False):
            for who, choice in zip(people, votes, strict=False):
                stamp = utcnow() if superseded else None
                s.add(
                    Judgment(comparison_id=comp.id, annotator_id=who.id, choice=choice, superseded_at=stamp)
                )

        pairs = [get_or_create_comparison(s, cands[0], c, Purpose.train)[0] for c in cands[1:]]
        judge(pairs[0], [B, B, A])  # b wins
        judge(pairs[0], [A, A, A], superseded=True)  # old decisions: ignored
        judge(pairs[1], [A, B])  # no majority
        judge(pairs[2], [TIE, TIE, A])  # tie
        judge(pairs[3], [BAD])  # both bad
        skipped = get_or_create_comparison(s, cands[1], cands[2], Purpose.train)[0]
        judge(skipped, [SKIP])
        get_or_create_comparison(s, cands[1], cands[3], Purpose.train)  # nobody judged it yet
        evaluation = get_or_create_comparison(s, cands[3], cands[4], Purpose.eval)[0]
        judge(evaluation, [A, A])
        eval_prompt_pair = get_or_create_comparison(s, eval_cands[0], eval_cands[1], Purpose.train)[0]
        s.add(Judgment(comparison_id=eval_prompt_pair.id, annotator_id=bot.id, choice=A))
    result = export_trl(any_engine, tmp_path, validation_share=0.0)
    assert result.dropped == {
        "both_bad": 1,
        "eval_prompt": 1,
        "eval_purpose": 1,
        "no_majority": 1,
        "skip": 1,
        "tie": 1,
        "unjudged": 1,
    }
    (row,) = read_jsonl(result.paths["train"])
    assert row["chosen"][0]["content"] == "title 1" and row["rejected"][0]["content"] == "title 0"
    assert read_jsonl(result.paths["validation"]) == []
    raw = read_jsonl(export_judgments(any_engine, tmp_path / "raw").paths["data"])
    assert len(raw) == 3 + 3 + 2 + 3 + 1 + 1 + 2 + 1  # every decision, superseded ones included
    assert sum(r["superseded_at"] is not None for r in raw) == 3
    assert {r["annotator_kind"] for r in raw} == {"human", "simulated"}


@pytest.mark.parametrize("name", ["dpo_en_demo", "dpo_zh_demo"])
def test_llamafactory_round_trip_gives_the_same_records_back(engine, tmp_path, name):
    source = LF_DEMO / f"{name}.json"
    records = json.loads(source.read_text(encoding="utf-8"))
    unique, seen = [], set()  # exact repeats are stored once (counted as duplicates at import)
    for record in records:
        if (key := json.dumps(record, sort_keys=True)) not in seen:
            seen.add(key)
            unique.append(record)
    imported = import_labels(engine, source, split="train")  # keep every prompt exportable
    assert imported.duplicates == len(records) - len(unique)
    (tmp_path / "dataset_info.json").write_text(
        json.dumps({"mine": {"file_name": "mine.json"}}), encoding="utf-8"
    )
    result = export_llamafactory(engine, tmp_path)
    assert result.dropped == {} and result.n_train == len(unique)
    exported = json.loads(result.paths["data"].read_text(encoding="utf-8"))
    assert exported == unique
    info = json.loads(result.paths["dataset_info"].read_text(encoding="utf-8"))
    assert info["mine"] == {"file_name": "mine.json"}  # an existing dataset_info.json is merged, not replaced
    assert info["prefloop_dpo"] == {
        "file_name": "prefloop_dpo.json",
        "ranking": True,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
    }


def test_llamafactory_export_leaves_eval_prompts_out(engine, tmp_path):
    import_labels(engine, LF_DEMO / "dpo_en_demo.json")  # hash split: some prompts are eval
    with session_scope(engine) as s:
        n_eval = len(s.exec(select(Prompt).where(Prompt.split == Split.eval)).all())
    result = export_llamafactory(engine, tmp_path)
    assert n_eval > 0 and result.dropped == {"eval_prompt": n_eval}
    assert result.n_train == 295 - n_eval


def test_trl_rows_keep_system_and_history_and_the_template_prompt(engine, tmp_path):
    import_labels(engine, LF_DEMO / "dpo_en_demo.json", split="train")
    rows = read_jsonl(export_trl(engine, tmp_path, validation_share=0.0).paths["train"])
    assert any(r["prompt"][0]["role"] == "system" for r in rows)
    assert any([m["role"] for m in r["prompt"]][:3] == ["user", "assistant", "user"] for r in rows)
    assert all(r["prompt"][-1]["role"] == "user" for r in rows)


@pytest.mark.postgres
def test_sqlite_and_postgresql_export_the_same_bytes(engine, postgres_server, tmp_path):
    from storage.db import make_engine, migrate
    from tests.conftest import fresh_postgres_url

    pg = make_engine(fresh_postgres_url(postgres_server))
    migrate(pg)
    hashes = []
    for name, eng in (("sqlite", engine), ("postgres", pg)):
        import_prompts(eng, IDEAS, column="Idea", template="youtube-title")
        import_labels(eng, SEED_LABELS, template="youtube-title")
        import_labels(eng, LF_DEMO / "dpo_zh_demo.json")
        hashes.append(
            (
                export_trl(eng, tmp_path / name / "trl").data_hash,
                export_llamafactory(eng, tmp_path / name / "lf").data_hash,
            )
        )
    pg.dispose()
    assert hashes[0] == hashes[1]


def seed_ties(engine) -> None:
    """10 train prompts, each with one decisive pair (title .0 over .1) and one tie (.2, .3), the last a
    both-bad instead."""
    with session_scope(engine) as s:
        version = get_or_create_version(s, "base", VersionKind.base)
        who = get_or_create_annotator(s, "ann")
        for i in range(10):
            prompt = Prompt(text=f"idea {i}", normalized_hash=f"{i:064x}", split=Split.train)
            s.add(prompt)
            s.flush()
            c = [get_or_create_candidate(s, prompt, version, f"title {i}.{k}")[0] for k in range(4)]
            for (x, y), choice in [((0, 1), A), ((2, 3), BAD if i == 9 else TIE)]:
                comp = get_or_create_comparison(s, c[x], c[y], Purpose.train)[0]
                s.add(Judgment(comparison_id=comp.id, annotator_id=who.id, choice=choice))


def test_ties_export_both_ways_into_train_only_and_leave_validation_as_it_was(any_engine, tmp_path):
    """train.use_ties: a tie or both-bad is two opposite train rows; the validation split (its prompts and
    rows) is the one the plain export holds; every label of a train prompt is used."""
    seed_ties(any_engine)
    plain = export_trl(any_engine, tmp_path / "plain", validation_share=0.2)
    both = export_trl(any_engine, tmp_path / "ties", validation_share=0.2, ties=True)
    assert plain.dropped == {"both_bad": 1, "tie": 9} and plain.n_tie_rows == 0
    assert (plain.n_train, plain.n_validation, plain.n_validation_prompts) == (8, 2, 2)
    assert both.paths["validation"].read_bytes() == plain.paths["validation"].read_bytes()
    assert both.dropped == {"tie_validation": 2}, "the held-out prompts' ties stay out of validation"
    assert (both.n_train, both.n_tie_rows) == (8 + 2 * 8, 2 * 8)
    assert (both.n_train_prompts, both.n_validation_prompts) == (plain.n_train_prompts, 2) == (8, 2)
    rows = read_jsonl(both.paths["train"])
    pairs = [(user_text(r), r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows]
    tied = [(p, c, r) for p, c, r in pairs if c.endswith((".2", ".3"))]
    assert len(tied) == 16 and {(p, r, c) for p, c, r in tied} == set(tied), "each tie once each way"
    assert [p for p in pairs if p not in tied] == [
        (user_text(r), r["chosen"][0]["content"], r["rejected"][0]["content"])
        for r in read_jsonl(plain.paths["train"])
    ], "the decisive rows are the plain export's, in its order"
    validation_prompts = {user_text(r) for r in read_jsonl(plain.paths["validation"])}
    assert not validation_prompts & {p for p, _, _ in tied}
    with session_scope(any_engine) as s:  # a prompt whose only label is a tie is a train prompt
        prompt = Prompt(text="tied idea", normalized_hash="t" * 64, split=Split.train)
        s.add(prompt)
        s.flush()
        version = get_or_create_version(s, "base", VersionKind.base)
        x, y = (get_or_create_candidate(s, prompt, version, f"tied {k}")[0] for k in range(2))
        comp = get_or_create_comparison(s, x, y, Purpose.train)[0]
        s.add(Judgment(comparison_id=comp.id, annotator_id=get_or_create_annotator(s, "ann").id, choice=TIE))
    more = export_trl(any_engine, tmp_path / "more", validation_share=0.2, ties=True)
    assert (more.n_train_prompts, more.n_tie_rows) == (9, 2 * 9)
    assert more.paths["validation"].read_bytes() == plain.paths["validation"].read_bytes()


def test_train_use_ties_reaches_the_rounds_export(engine, sqlite_url):
    from core.config import load_config
    from training.pipeline import export_labels

    seed_ties(engine)
    plain = export_labels(engine, load_config(None, [], db=sqlite_url), "round-1", previous_hash=None)
    config = load_config(None, ["train.use_ties=true"], db=sqlite_url)
    both = export_labels(engine, config, "round-1", previous_hash=plain.data_hash)
    assert (plain.n_tie_rows, plain.dropped) == (0, {"both_bad": 1, "tie": 9})
    # train.validation_share 0.1 holds out 1 of the 10 prompts
    assert both.changed and both.dropped == {"tie_validation": 1}
    assert both.n_tie_rows == 2 * 9 and both.n_train == plain.n_train + 2 * 9
    assert len(read_jsonl(both.path / "train.jsonl")) == both.n_train
