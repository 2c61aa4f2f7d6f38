"""Build the tiny title model from scratch: ``python -m generation.tiny_model.build`` (make tiny-model).

1. a byte-level BPE tokenizer (Qwen2 rules, ChatML specials) on the English demo text, ideas and titles;
2. language-model pre-training on that text, so the model knows English words beyond the 570 titles;
3. supervised fine-tuning on (seed prompt → title), loss on the answer only; each epoch is topped up
   with fresh topic-substituted copies (``data.substitute_topic``) against memorisation;
4. sampling 5 titles for each of the 114 ideas and recording their health beside the weights.

Fixed seed, CPU, bf16 autocast where native. The output directory is replaced atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from generation.tiny_model.data import (
    TitleExample,
    augmented_examples,
    chat_example,
    english_phrases,
    load_english_text,
    load_title_examples,
    render_seed_prompt,
    topic_phrases,
)
from generation.tiny_model.tokenizer import END_OF_TEXT, IM_END, train_tokenizer, wrap
from models.catalog import TINY_DIR
from storage.files import atomic_replace_dir

CONTEXT = 512


@dataclass
class BuildSettings:
    seed: int = 0
    vocab_size: int = 4096
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 704
    pretrain_steps: int = 200
    pretrain_batch: int = 16
    pretrain_seq: int = 256
    pretrain_lr: float = 2e-3
    sft_epochs: int = 24
    sft_batch: int = 32
    sft_lr: float = 1e-3
    title_weight: int = 20  # how many times titles and prompts count in the tokenizer's corpus
    augment_share: float = 0.5  # share of each SFT epoch made of topic-substituted examples
    sft_limit: int | None = None  # use only the first N title examples (the shortened test build)
    health_ideas: int | None = None  # sample the health check for the first N ideas only
    # One thread: a 256-wide model's matmuls are too small to split well, and on a shared machine two
    # OpenMP threads contending for busy cores ran ~8x slower than one (measured; see README).
    threads: int = 1


# The shortened build the tests run: every stage once, on a few examples; not a usable model.
QUICK = {
    "pretrain_steps": 2,
    "pretrain_batch": 2,
    "sft_epochs": 1,
    "sft_limit": 64,
    "vocab_size": 1024,
    "health_ideas": 4,
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def elapsed(started: float) -> str:
    return f"{time.perf_counter() - started:.0f} s"


def model_config(s: BuildSettings, tok):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=s.vocab_size,
        hidden_size=s.hidden,
        intermediate_size=s.intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
        max_position_embeddings=CONTEXT,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        bos_token_id=None,
        eos_token_id=tok.convert_tokens_to_ids(IM_END),
        pad_token_id=tok.convert_tokens_to_ids(END_OF_TEXT),
    )


def masked_lm_loss(model, input_ids, attention_mask, loss_mask):
    """Next-token loss on positions where ``loss_mask`` is set; the output layer runs only there."""
    import torch.nn.functional as F

    hidden = model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    target_mask = loss_mask[:, 1:]
    selected = hidden[:, :-1][target_mask]
    logits = model.lm_head(selected).float()
    return F.cross_entropy(logits, input_ids[:, 1:][target_mask])


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class Trainer:
    """A plain AdamW loop with bf16 autocast (where native) and a cosine schedule."""

    def __init__(self, model, lr: float, total_steps: int, bf16: bool) -> None:
        import torch

        self.model = model
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
        self.peak, self.total, self.step_no, self.bf16 = lr, total_steps, 0, bf16

    def step(self, input_ids, attention_mask, loss_mask) -> float:
        import torch

        for group in self.opt.param_groups:
            group["lr"] = cosine_lr(self.step_no, self.total, self.peak, warmup=max(1, self.total // 20))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = masked_lm_loss(self.model, input_ids, attention_mask, loss_mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step_no += 1
        return loss.item()


def pretrain_chunks(tok, texts: list[str], seq: int):
    """All text as one token stream split into ``seq``-token rows."""
    import torch

    eot = tok.convert_tokens_to_ids(END_OF_TEXT)
    stream: list[int] = []
    for text in texts:
        stream.extend(tok.backend_tokenizer.encode(text, add_special_tokens=False).ids)
        stream.append(eot)
    rows = len(stream) // seq
    return torch.tensor(stream[: rows * seq]).view(rows, seq)


def sft_batch(tok, examples: list[TitleExample]):
    """Right-padded (prompt + answer + <|im_end|>) rows with the loss on answer and end-of-turn only."""
    import torch

    rows, masks = [], []
    for ex in examples:
        messages, answer = chat_example(render_seed_prompt, ex)
        prompt_ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
        answer_ids = tok(answer + IM_END, add_special_tokens=False)["input_ids"]
        rows.append(prompt_ids + answer_ids)
        masks.append([False] * len(prompt_ids) + [True] * len(answer_ids))
    width = max(map(len, rows))
    pad = tok.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    attn = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    loss = torch.tensor([m + [False] * (width - len(m)) for m in masks])
    return ids, attn, loss


def sample_health(
    model_dir: Path, examples: list[TitleExample], seed: int, limit: int | None = None
) -> tuple[dict, dict[str, list]]:
    """5 samples per seed idea with the default sampling, through the real generation backend."""
    from generation.backends.base import Policy, SamplingParams
    from generation.backends.transformers_backend import TransformersBackend
    from generation.tiny_model.quality import title_health

    ideas = list(dict.fromkeys(ex.idea for ex in examples))[:limit]
    backend = TransformersBackend(batch_size=120)
    policy = Policy(name="base", base_model=str(model_dir))
    prompts = [[{"role": "user", "content": render_seed_prompt(i)}] for i in ideas]
    out = backend.generate(prompts, policy, SamplingParams(n=5, seed=seed))
    backend.close()
    samples = dict(zip(ideas, out, strict=True))
    health = title_health(samples, {ex.title for ex in examples})
    return health.as_dict(), samples


def build(out_dir: Path, settings: BuildSettings) -> dict:
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    from models.loading import cpu_has_native_bf16

    started, cpu_started = time.perf_counter(), time.process_time()
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    torch.set_num_threads(settings.threads)
    bf16 = cpu_has_native_bf16()

    examples = load_title_examples()[: settings.sft_limit]
    english = load_english_text()
    rendered = [render_seed_prompt(i) for i in dict.fromkeys(ex.idea for ex in examples)]
    # Title and idea text counted many times over: their words become whole tokens, so a sampled title is
    # built from real words rather than from sub-word pieces that recombine into non-words.
    corpus = english + (rendered + [ex.title for ex in examples]) * settings.title_weight
    tok = wrap(train_tokenizer(corpus, settings.vocab_size), CONTEXT)
    log(f"tokenizer: {len(tok)} tokens ({elapsed(started)})")

    model = Qwen2ForCausalLM(model_config(settings, tok))
    log(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, bf16 autocast={bf16}")

    chat_texts = [
        tok.apply_chat_template(
            [*chat_example(render_seed_prompt, ex)[0], {"role": "assistant", "content": ex.title}],
            tokenize=False,
        )
        for ex in examples
    ]
    chunks = pretrain_chunks(tok, english + chat_texts, settings.pretrain_seq)
    model.train()
    trainer = Trainer(model, settings.pretrain_lr, settings.pretrain_steps, bf16)
    order = torch.randperm(len(chunks), generator=torch.Generator().manual_seed(settings.seed))
    for step in range(settings.pretrain_steps):
        idx = order[(torch.arange(settings.pretrain_batch) + step * settings.pretrain_batch) % len(chunks)]
        rows = chunks[idx]
        loss = trainer.step(rows, torch.ones_like(rows), torch.ones_like(rows, dtype=torch.bool))
        if step % 50 == 0 or step == settings.pretrain_steps - 1:
            log(f"pretrain {step + 1}/{settings.pretrain_steps} loss {loss:.3f} ({elapsed(started)})")

    replacements = topic_phrases(examples) + english_phrases(english, rng, 400)
    n_aug = int(len(examples) * settings.augment_share / (1 - settings.augment_share))
    per_epoch = len(examples) + n_aug
    total = settings.sft_epochs * math.ceil(per_epoch / settings.sft_batch)
    trainer = Trainer(model, settings.sft_lr, total, bf16)
    for epoch in range(settings.sft_epochs):
        fresh = augmented_examples(examples, replacements, rng)
        rng.shuffle(fresh)
        epoch_examples = examples + fresh[:n_aug]
        rng.shuffle(epoch_examples)
        losses = [
            trainer.step(*sft_batch(tok, epoch_examples[i : i + settings.sft_batch]))
            for i in range(0, len(epoch_examples), settings.sft_batch)
        ]
        mean_loss = sum(losses) / len(losses)
        log(f"sft epoch {epoch + 1}/{settings.sft_epochs} loss {mean_loss:.3f} ({elapsed(started)})")

    model.eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[tok.eos_token_id, tok.pad_token_id],
        pad_token_id=tok.pad_token_id,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        max_new_tokens=48,
    )
    staging = Path(tempfile.mkdtemp(prefix=".embedded-", dir=out_dir.parent))
    model.save_pretrained(staging)
    tok.save_pretrained(staging)
    train_seconds = time.perf_counter() - started
    # CPU seconds say what the build costs on idle cores; wall time on a shared machine says little.
    train_cpu_seconds = time.process_time() - cpu_started
    health, samples = sample_health(staging, examples, settings.seed, settings.health_ideas)
    report = {
        "settings": asdict(settings),
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1),
        "threads": settings.threads,
        "health_5_per_seed_idea": health,
        "examples": {idea: [g.text for g in gs] for idea, gs in list(samples.items())[:5]},
    }
    (staging / "build_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    atomic_replace_dir(staging, out_dir)  # the old model is removed only after the new one is in place
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TINY_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few steps only (tests): not a usable model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see README)")
    for f in fields(BuildSettings):
        if f.name not in ("seed", "threads"):
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=float if f.type == "float" else int)
    args = parser.parse_args(argv)
    chosen = {"seed": args.seed, "threads": args.threads, **(QUICK if args.quick else {})}
    chosen.update(
        {f.name: v for f in fields(BuildSettings) if (v := getattr(args, f.name, None)) is not None}
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = build(args.out, BuildSettings(**chosen))
    print(
        json.dumps(
            {k: report[k] for k in ("train_seconds", "train_cpu_seconds", "health_5_per_seed_idea")}, indent=2
        )
    )


if __name__ == "__main__":
    main()
