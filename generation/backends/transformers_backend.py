"""Generation with Hugging Face ``generate``: batched, left-padded, seeded; runs anywhere torch runs.

Prompts are grouped so that (prompts in a group) × n ≤ ``generation.batch_size`` sequences, and each
group reseeds torch's generator from ``seed + group index``: the same prompts, sampling and batch size
give the same texts, and a group's output does not depend on what ran before it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from generation.backends.base import Generated, Messages, Policy, SamplingParams
from models.loading import MERGE_BY_DEFAULT, load_model, load_tokenizer, torch_threads

if TYPE_CHECKING:
    from core.config import Config


class TransformersBackend:
    name = "transformers"

    def __init__(
        self,
        batch_size: int = 64,
        dtype: str = "auto",
        merge: bool = MERGE_BY_DEFAULT,
        cpu_threads: int | None = 1,
    ) -> None:
        self.batch_size = batch_size
        self.dtype = dtype
        self.merge = merge
        self.cpu_threads = cpu_threads
        self._loaded: tuple[tuple[str, str | None], object, object] | None = None

    def _model_for(self, policy: Policy):
        """Keeps one (model, tokenizer) loaded; switching policy reloads (a round uses one policy)."""
        key = (policy.base_model, policy.adapter_path)
        if self._loaded is None or self._loaded[0] != key:
            self._loaded = None
            model = load_model(policy.base_model, policy.adapter_path, dtype=self.dtype, merge=self.merge)
            self._loaded = (key, model, load_tokenizer(policy.base_model))
        return self._loaded[1], self._loaded[2]

    def generate(
        self, prompts: list[Messages], policy: Policy, sampling: SamplingParams
    ) -> list[list[Generated]]:

        model, tok = self._model_for(policy)
        with torch_threads(self.cpu_threads if model.device.type == "cpu" else None):
            return self._generate(model, tok, prompts, sampling)

    def _generate(
        self, model, tok, prompts: list[Messages], sampling: SamplingParams
    ) -> list[list[Generated]]:
        import torch

        texts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts]
        stop_ids = stop_token_ids(model, tok)
        ends = stop_ids + newline_token_ids(tok, sampling.stop)
        longer = [s for s in sampling.stop if s != "\n"]
        per_group = max(1, self.batch_size // sampling.n)
        out: list[list[Generated]] = []
        for index, start in enumerate(range(0, len(texts), per_group)):
            batch = tok(
                texts[start : start + per_group], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            torch.manual_seed(sampling.seed + index)
            with torch.inference_mode():
                if longer:  # stop texts other than newline: generate's token-level stop-string check
                    seqs = model.generate(
                        **shared_prompt_cache(model, batch["input_ids"], batch["attention_mask"], sampling.n),
                        **sampling_kwargs(sampling),
                        max_new_tokens=sampling.max_new_tokens,
                        eos_token_id=ends,
                        pad_token_id=tok.pad_token_id,
                        stop_strings=longer,
                        tokenizer=tok,
                    )[:, batch["input_ids"].shape[1] :]
                else:
                    seqs = sample_shrinking(
                        model,
                        shared_prompt_cache(model, batch["input_ids"], batch["attention_mask"], sampling.n),
                        sampling,
                        ends=ends,
                        pad_id=tok.pad_token_id,
                    )
            new = seqs.tolist()
            decoded = [decode_completion(tok, ids, stop_ids, sampling.stop) for ids in new]
            out.extend(decoded[i : i + sampling.n] for i in range(0, len(decoded), sampling.n))
        return out

    def stream(
        self, messages: Messages, policy: Policy, sampling: SamplingParams, on_text: Callable[[str], None]
    ) -> Generated:
        """One completion of one chat (``sampling.n`` is ignored), calling ``on_text`` with the text so
        far as tokens arrive; returns what ``generate`` would have decoded for it."""
        import threading

        import torch
        from transformers import TextIteratorStreamer

        model, tok = self._model_for(policy)
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        batch = tok([text], return_tensors="pt", add_special_tokens=False).to(model.device)
        stop_ids = stop_token_ids(model, tok)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        done: dict[str, object] = {}

        def work() -> None:
            try:
                with torch_threads(self.cpu_threads if model.device.type == "cpu" else None):
                    torch.manual_seed(sampling.seed)
                    with torch.inference_mode():
                        done["ids"] = model.generate(
                            **batch,
                            streamer=streamer,
                            **sampling_kwargs(sampling),
                            max_new_tokens=sampling.max_new_tokens,
                            eos_token_id=stop_ids,
                            pad_token_id=tok.pad_token_id,
                        )
            except BaseException as exc:  # re-raised in the caller's thread below
                done["error"] = exc
                streamer.end()  # generate never ended the stream: unblock the reader

        worker = threading.Thread(target=work, name="prefloop-stream", daemon=True)
        worker.start()
        so_far = ""
        for piece in streamer:
            so_far += piece
            on_text(so_far)
        worker.join()
        if "error" in done:
            raise done["error"]
        new = done["ids"][0, batch["input_ids"].shape[1] :].tolist()
        return decode_completion(tok, new, stop_ids)

    def close(self) -> None:
        self._loaded = None


def shared_prompt_cache(model, input_ids, attention_mask, n: int) -> dict:
    """``generate`` inputs for ``n`` samples per prompt that run each prompt through the model once.

    ``num_return_sequences=n`` would copy every prompt n times before the forward pass, and on a short
    title the prompt is most of the work. Instead the prompt (all but its last token) fills a KV cache once,
    the cache is repeated n times, and ``generate`` continues from it. Positions follow the left padding as
    ``generate`` computes them, so the samples equal plain ``generate``'s for the same seed (tested).
    """
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    model(
        input_ids=input_ids[:, :-1],
        attention_mask=attention_mask[:, :-1],
        position_ids=positions[:, :-1],
        cache=cache,
        use_cache=True,
    )
    cache.batch_repeat_interleave(n)
    return {
        "input_ids": input_ids.repeat_interleave(n, dim=0),
        "attention_mask": attention_mask.repeat_interleave(n, dim=0),
        "cache": cache,
    }


def sampling_kwargs(sampling: SamplingParams) -> dict:
    """``generate``'s sampling arguments for ``sampling`` (temperature 0: greedy; no top-k)."""
    sample = sampling.temperature > 0
    return {
        "do_sample": sample,
        "temperature": sampling.temperature if sample else None,
        "top_p": sampling.top_p if sample else None,
        "top_k": None,
    }


def sample_shrinking(model, prefilled: dict, sampling: SamplingParams, *, ends: list[int], pad_id: int):
    """The new tokens ``model.generate(**prefilled, **sampling_kwargs(sampling), eos_token_id=ends)``
    samples under the same torch seed, shape (rows, steps), ``pad_id`` after a row's end token — but a
    row that has ended leaves the forward pass. ``generate`` keeps computing every row until the longest
    ends: with 64 titles of ~16 tokens and one that rambles to ``max_new_tokens`` 32, half of its work is
    on finished rows. The draw stays generate's: softmax of the temperature/top-p-warped logits, one
    ``torch.multinomial`` over all rows (finished ones given a uniform row), so the random stream is
    consumed exactly as generate consumes it (tested equal on the tiny model in fp32). Top-p is
    ``nucleus``: generate's rule without sorting the whole vocabulary every step.
    """
    import torch

    cache, mask = prefilled["cache"], prefilled["attention_mask"]
    rows = prefilled["input_ids"].shape[0]
    token = prefilled["input_ids"][:, -1:]
    device = token.device
    end_ids = torch.tensor(ends, device=device)
    out = torch.full((rows, sampling.max_new_tokens), pad_id, dtype=torch.long, device=device)
    live = torch.arange(rows, device=device)  # the rows still in the batch, in batch order
    steps = 0
    for step in range(sampling.max_new_tokens):
        positions = mask.cumsum(-1)[:, -1:] - 1
        logits = (
            model(input_ids=token, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
            .logits[:, -1]
            .float()
        )
        if sampling.temperature > 0:
            probs = torch.full((rows, logits.shape[-1]), 1.0 / logits.shape[-1], device=device)
            scores = logits / sampling.temperature if sampling.temperature != 1.0 else logits
            if sampling.top_p < 1.0:
                scores = nucleus(scores, sampling.top_p)
            probs[live] = torch.softmax(scores, dim=-1)
            chosen = torch.multinomial(probs, num_samples=1).squeeze(1)[live]
        else:
            chosen = logits.argmax(dim=-1)
        out[live, step] = chosen
        steps = step + 1
        mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=-1)
        going = ~torch.isin(chosen, end_ids)
        if not going.any():
            break
        if not going.all():
            keep = going.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            mask, live, chosen = mask[keep], live[keep], chosen[keep]
        token = chosen[:, None]
    return out[:, :steps]


def nucleus(scores, top_p: float, head: int = 256):
    """``TopPLogitsWarper(top_p)(scores)``: -inf outside each row's nucleus, the smallest set of top tokens
    whose probability reaches ``top_p`` (a token stays when the mass ranked above it is < ``top_p``).
    Scores (rows, vocab). The warper sorts all 49,152 scores of a row at every step, a fifth of
    SmolLM2's sampling time; a nucleus almost always lies inside the top ``head``, so only those are
    ranked, and a row whose top ``head`` hold less than ``top_p`` goes through the warper itself."""
    import torch
    from transformers import TopPLogitsWarper

    probs = torch.softmax(scores, dim=-1)
    top, index = scores.topk(min(head, scores.shape[-1]), dim=-1)
    top_probs = probs.gather(-1, index)
    above = top_probs.cumsum(dim=-1) - top_probs
    out = torch.full_like(scores, float("-inf")).scatter_(
        -1, index, torch.where(above < top_p, top, torch.full_like(top, float("-inf")))
    )
    short = (above[:, -1] + top_probs[:, -1]) < top_p
    if short.any():
        out[short] = TopPLogitsWarper(top_p)(None, scores[short])
    return out


def stop_token_ids(model, tok) -> list[int]:
    """End-of-turn plus the model's own eos ids (Qwen's generation_config lists both)."""
    ids = {tok.eos_token_id}
    configured = model.generation_config.eos_token_id
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def newline_token_ids(tok, stop: tuple[str, ...]) -> list[int]:
    """With "\\n" among the stop texts: every token that writes a newline, to end a sequence as eos does.

    ``generate(stop_strings=...)`` finds the same tokens but checks the sequences' text at every step;
    a token id is checked for free. ``decode_completion`` then cuts the text at the newline.
    """
    if "\n" not in stop:
        return []
    return [i for token, i in tok.get_vocab().items() if "\n" in tok.convert_tokens_to_string([token])]


def decode_completion(tok, ids: list[int], stop_ids: list[int], stop: tuple[str, ...] = ()) -> Generated:
    """Cut at the first stop token or stop text, as vLLM does: the text ends before it, and the token
    that completed it counts as generated (it is what makes the answer end)."""
    stop_at = next((i for i, t in enumerate(ids) if t in stop_ids), None)
    kept = ids if stop_at is None else ids[:stop_at]
    text = tok.decode(kept, skip_special_tokens=True)
    cuts = [text.index(s) for s in stop if s in text]
    if cuts:
        cut = min(cuts)
        # the first token whose text reaches past the cut is the one that wrote the stop text
        n_tokens = next(
            i + 1 for i in range(len(kept)) if len(tok.decode(kept[: i + 1], skip_special_tokens=True)) > cut
        )
        return Generated(text[:cut].strip(), "stop", n_tokens)
    if stop_at is None:
        return Generated(text.strip(), "length", len(ids))
    return Generated(text.strip(), "stop", stop_at + 1)


def make_backend(config: Config) -> TransformersBackend:
    g = config.generation
    return TransformersBackend(batch_size=g.batch_size, dtype=config.model.dtype, cpu_threads=g.cpu_threads)
