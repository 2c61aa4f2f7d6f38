"""The one generation API the CLI, the app and training use.

``generate_candidates`` is step 1 of a round: validate everything first (model, adapter, prompt lengths),
sample with a backend, then store all candidates and the pairs to label in ONE transaction, so a round's
candidates appear together or not at all. ``answer`` samples one reply without storing (the app's Compare).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from core.config import Config
from core.errors import PrefloopError
from core.words import is_degenerate
from generation.backends import get_backend, resolve_backend_name
from generation.backends.base import Backend, Generated, Messages, Policy, SamplingParams
from storage.db import session_scope
from storage.models import Candidate, ModelVersion, Prompt, Purpose, Split, VersionKind, prompt_messages
from storage.repo import get_or_create_candidate, get_or_create_comparison, get_or_create_round
from storage.templates import asks_for_title
from storage.versions import BASE, latest_adapter, version_named

ROUND_SEED_STRIDE = 1000  # round r samples with seeds starting at seed + r * stride: new round, new texts


@dataclass
class GenerationSummary:
    policy: str
    backend: str
    prompts: int
    generated: int  # texts sampled
    candidates_added: int  # new rows stored
    duplicates_dropped: int  # texts identical to another of the same prompt and policy
    empty_dropped: int  # blank texts (nothing to judge)
    pairs_queued: int  # new comparisons
    truncated: int  # texts cut at max_new_tokens
    tokens: int
    seconds: float  # sampling time
    tokens_per_s: float
    candidates_per_s: float
    selection: str = ""  # labelling.pair_selection that ranked the pairs
    selection_seconds: float = 0.0  # scoring the candidates with the policy (``uncertain``) and ranking
    unpaired: int = 0  # distinct texts kept out of train pairs: cut off or looping (sound_pairs_only)


def resolve_policy(session: Session, config: Config, policy: str, *, create: bool = True) -> ModelVersion:
    """``base`` (created on first use from ``model.base``), ``latest`` (the highest "round-N" adapter,
    else base), or a version name. With ``create=False`` a missing base version is returned unsaved
    (id None)."""
    if policy == "latest":
        return latest_adapter(session) or resolve_policy(session, config, BASE, create=create)
    version = version_named(session, policy)
    if policy == BASE:
        if version is None:
            version = ModelVersion(name=BASE, kind=VersionKind.base, base_model=config.model.base)
            if create:
                session.add(version)
                session.flush()
        elif version.base_model != config.model.base:
            raise PrefloopError(
                f"policy base: this database's base model is {version.base_model!r} but model.base is "
                f"{config.model.base!r}; use --set model.base={version.base_model} or a new database (--db)"
            )
        return version
    if version is None:
        names = session.exec(select(ModelVersion.name).where(ModelVersion.kind != VersionKind.external)).all()
        raise PrefloopError(
            f"policy {policy!r}: no such model version; use base, latest or one of: {', '.join(names) or '-'}"
        )
    if version.kind == VersionKind.external:
        raise PrefloopError(f"policy {policy!r} is an external model (imported text): it cannot generate")
    return version


def policy_of(version: ModelVersion) -> Policy:
    return Policy(
        name=version.name,
        base_model=version.base_model,
        adapter_path=version.adapter_path,
        lora_id=version.id or 0,
    )


def sampling_from(config: Config, n: int | None = None, seed: int | None = None) -> SamplingParams:
    """The config's sampling; an unset temperature/top_p is the base model's own default."""
    from models.loading import sampling_defaults

    g = config.generation
    defaults = sampling_defaults(config.model.base) if g.temperature is None or g.top_p is None else {}
    return SamplingParams(
        n=n or g.n,
        temperature=defaults["temperature"] if g.temperature is None else g.temperature,
        top_p=defaults["top_p"] if g.top_p is None else g.top_p,
        max_new_tokens=g.max_new_tokens,
        seed=g.seed if seed is None else seed,
        stop=tuple(g.stop),
    )


def validate_policy(policy: Policy) -> int:
    """Model and adapter exist and load offline; returns the model's context length (tokens)."""
    from transformers import AutoConfig

    from models.loading import check_adapter, resolve_model

    path = resolve_model(policy.base_model)
    if policy.adapter_path:
        check_adapter(policy.adapter_path)
    cfg = AutoConfig.from_pretrained(path)
    return int(getattr(cfg, "max_position_embeddings", 0) or 2048)


def check_prompt_lengths(policy: Policy, prompts: dict[int, Messages], max_new_tokens: int) -> None:
    """PrefloopError naming the first prompt whose tokens + max_new_tokens exceed the context."""
    from models.loading import load_tokenizer

    context = validate_policy(policy)
    tok = load_tokenizer(policy.base_model)
    for prompt_id, messages in prompts.items():
        length = len(tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))
        if length + max_new_tokens > context:
            raise PrefloopError(
                f"prompt {prompt_id}: {length} tokens + max_new_tokens {max_new_tokens} exceed the model's "
                f"context of {context}; shorten the prompt or lower generation.max_new_tokens"
            )


def _load_prompts(session: Session, split: Split, prompt_ids: list[int] | None) -> list[Prompt]:
    query = select(Prompt).where(Prompt.split == split).order_by(col(Prompt.id))
    if prompt_ids is not None:
        query = select(Prompt).where(col(Prompt.id).in_(prompt_ids)).order_by(col(Prompt.id))
    prompts = list(session.exec(query))
    if prompt_ids is not None and len(prompts) != len(set(prompt_ids)):
        missing = sorted(set(prompt_ids) - {p.id for p in prompts})
        raise PrefloopError(f"prompt ids {missing} do not exist; see `prefloop status`")
    if not prompts:
        raise PrefloopError(
            f"no {split.value} prompts in the database; add some with `prefloop prompts import FILE`"
        )
    return prompts


def _sample(
    backend: Backend,
    prompts: list[Prompt],
    policy: Policy,
    sampling: SamplingParams,
    group: int,
    progress: bool,
) -> tuple[list[tuple[Prompt, SamplingParams, list[Generated]]], float]:
    """Sample in groups of ``group`` prompts (one backend call each, seed + group index)."""
    from tqdm import tqdm

    results = []
    started = time.perf_counter()
    with tqdm(total=len(prompts), unit="prompt", desc=f"generate {policy.name}", disable=not progress) as bar:
        for index, start in enumerate(range(0, len(prompts), group)):
            chunk = prompts[start : start + group]
            params = replace(sampling, seed=sampling.seed + index)
            outs = backend.generate([prompt_messages(p) for p in chunk], policy, params)
            results.extend((p, params, out) for p, out in zip(chunk, outs, strict=True))
            bar.update(len(chunk))
    return results, time.perf_counter() - started


# A round's pairs to queue, best first: (config, prompt id -> (its messages, its distinct texts), the
# policy's base model and adapter, purpose, seed) -> (prompt id, index a, index b) into those texts.
# ``labelling.selection.rank_pairs`` is the production one; the caller passes it, so generation does not
# depend on labelling.
PairRanker = Callable[..., list[tuple[int, int, int]]]


def generate_candidates(
    engine: Engine,
    config: Config,
    *,
    round_id: int,
    policy: str = "base",
    split: Split = Split.train,
    n: int | None = None,
    purpose: Purpose = Purpose.train,
    pairs: PairRanker | None = None,
    prompt_ids: list[int] | None = None,
    backend: str | None = None,
    progress: bool = True,
    missing_only: bool = False,
) -> GenerationSummary:
    """Sample ``n`` candidates per prompt of ``split`` with ``policy`` and store them for round ``round_id``.

    Pairs (only with a ``pairs`` ranker, e.g. ``labelling.selection.rank_pairs``): the pairs of a prompt's
    candidates it chooses, each stored with its rank (``Comparison.queue_rank``, the order people get them).
    Seeds: ``generation.seed + round_id * 1000 + group index``, stored with each candidate.
    ``missing_only``: skip the prompts that already have candidates of ``policy`` in this round (finish an
    interrupted run, or the rest of ``prefloop demo``'s first prompts).
    """
    if round_id < 0:
        raise PrefloopError(f"--round {round_id}: rounds are numbered from 0")
    sampling = sampling_from(config, n, seed=config.generation.seed + round_id * ROUND_SEED_STRIDE)
    if sampling.n < 1:
        raise PrefloopError(f"--n {sampling.n}: ask for at least one candidate per prompt")
    with session_scope(engine) as session:
        prompts = _load_prompts(session, split, prompt_ids)
        version = resolve_policy(session, config, policy, create=False)
        if missing_only and version.id is not None:
            done = set(
                session.exec(
                    select(Candidate.prompt_id).where(
                        Candidate.model_version_id == version.id, Candidate.round_id == round_id
                    )
                )
            )
            prompts = [p for p in prompts if p.id not in done]
        pol = policy_of(version)
    if not prompts:
        return GenerationSummary(pol.name, "none", 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0)
    check_prompt_lengths(pol, {p.id: prompt_messages(p) for p in prompts}, sampling.max_new_tokens)

    backend_name = resolve_backend_name(config, backend)
    engine_backend = get_backend(config, backend_name)
    try:
        group = max(1, config.generation.batch_size // sampling.n)
        results, seconds = _sample(engine_backend, prompts, pol, sampling, group, progress)
    finally:
        engine_backend.close()

    sound_only = purpose == Purpose.train and config.labelling.sound_pairs_only
    texts, unpaired = {}, 0
    for p, _, outs in results:
        title_like = asks_for_title(p.text, p.template, config.report.title_templates)
        distinct = _distinct_texts(outs)
        sound = {g.text for g in outs if not sound_only or _is_sound(g, title_like)}
        texts[p.id] = (prompt_messages(p), [t for t in distinct if t in sound])
        unpaired += len(distinct) - len(texts[p.id][1])
    selection_started = time.perf_counter()
    ranked = (
        pairs(
            config,
            texts,
            base_model=pol.base_model,
            adapter_path=pol.adapter_path,
            purpose=purpose,
            seed=sampling.seed,
        )
        if pairs is not None
        else []
    )
    selection_seconds = time.perf_counter() - selection_started
    added = duplicates = empty = queued = 0
    by_text: dict[int, dict[str, Candidate]] = {}
    with session_scope(engine, write=True) as session:
        get_or_create_round(session, round_id)
        version = resolve_policy(session, config, policy)
        for prompt, params, outs in results:
            kept = by_text.setdefault(prompt.id, {})
            for g in outs:
                if not g.text.strip():
                    empty += 1
                    continue
                cand, created = get_or_create_candidate(
                    session,
                    prompt,
                    version,
                    g.text,
                    round_id=round_id,
                    sampling=params.as_dict(),
                    seed=params.seed,
                    backend=backend_name,
                    finish_reason=g.finish_reason,
                )
                added += created
                duplicates += g.text in kept or not created
                kept[g.text] = cand
        for rank, (prompt_id, a, b) in enumerate(ranked):
            texts_of = texts[prompt_id][1]
            first, second = by_text[prompt_id][texts_of[a]], by_text[prompt_id][texts_of[b]]
            queued += get_or_create_comparison(session, first, second, purpose, round_id, queue_rank=rank)[1]
    generated = sum(len(outs) for _, _, outs in results)
    tokens = sum(g.n_tokens for _, _, outs in results for g in outs)
    return GenerationSummary(
        policy=pol.name,
        backend=backend_name,
        prompts=len(prompts),
        generated=generated,
        candidates_added=added,
        duplicates_dropped=duplicates,
        empty_dropped=empty,
        pairs_queued=queued,
        truncated=sum(g.finish_reason == "length" for _, _, outs in results for g in outs),
        unpaired=unpaired,
        tokens=tokens,
        seconds=seconds,
        tokens_per_s=tokens / seconds if seconds else 0.0,
        candidates_per_s=generated / seconds if seconds else 0.0,
        selection=config.labelling.pair_selection if pairs is not None else "",
        selection_seconds=selection_seconds,
    )


def _is_sound(g: Generated, title_like: bool) -> bool:
    """Ended on its own (not cut at max_new_tokens) and not looping (``core.words.is_degenerate``, the
    report's repeat test): a text worth asking someone to choose."""
    return g.finish_reason != "length" and not is_degenerate(g.text, title_like)


def _distinct_texts(outs: list[Generated]) -> list[str]:
    """A prompt's non-empty texts, each once, in the order sampled (the order its candidates are stored)."""
    return list(dict.fromkeys(g.text for g in outs if g.text.strip()))


_shared_backends: dict[str, Backend] = {}
_shared_lock = threading.Lock()  # one loaded model per backend: two app sessions take turns


def answer(
    config: Config,
    version: ModelVersion,
    messages: Messages,
    seed: int,
    on_text: Callable[[str], None] | None = None,
) -> tuple[Generated, SamplingParams]:
    """One completion of one chat for ``version`` with ``seed``, nothing stored (the app's Compare), and
    the sampling it used. With ``on_text`` the text so far is passed on as tokens arrive, where the
    backend can stream (transformers); others call it once with the whole text. The backend stays loaded
    between calls."""
    pol = policy_of(version)
    sampling = sampling_from(config, 1, seed=seed)
    check_prompt_lengths(pol, {0: messages}, sampling.max_new_tokens)
    name = resolve_backend_name(config, config.generation.backend)
    with _shared_lock:
        if name not in _shared_backends:
            _shared_backends[name] = get_backend(config, name)
        backend = _shared_backends[name]
        stream = getattr(backend, "stream", None)  # an optional capability, not part of Backend
        if on_text is not None and stream is not None:
            return stream(messages, pol, sampling, on_text), sampling
        out = backend.generate([messages], pol, sampling)[0][0]
    if on_text is not None:
        on_text(out.text)
    return out, sampling
