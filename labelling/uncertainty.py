"""The policy's own view of a pair: DPO implicit rewards of candidates, for ``uncertain`` pair selection.

r(x, y) = β · (log π(y | x) − log π_ref(y | x)), with π the adapter on the base model and π_ref the base
(the adapter switched off), which is the reward a DPO-trained policy implicitly holds; a pair's margin is
r(a) − r(b). Computed once per round, batched, with two forward passes over the round's candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

Messages = list[dict[str, str]]


def completion_ids(tok, messages: Messages, text: str) -> tuple[list[int], list[int]]:
    """(prompt tokens, completion tokens) of ``text`` as the assistant's reply to ``messages``, with the
    chat template's end-of-turn (what training scores); the plain text tokens when the template does not
    extend the prompt."""
    prompt = list(tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))
    full = list(
        tok.apply_chat_template(
            [*messages, {"role": "assistant", "content": text}],
            add_generation_prompt=False,
            return_dict=False,
        )
    )
    if full[: len(prompt)] == prompt and len(full) > len(prompt):
        return prompt, full[len(prompt) :]
    return prompt, tok(text, add_special_tokens=False)["input_ids"]


def sequence_log_probs(model, batch: Sequence[tuple[list[int], list[int]]], pad_id: int):
    """Sum of log p(completion token | everything before it) per (prompt, completion); shape (batch,)."""
    import torch

    width = max(len(p) + len(c) for p, c in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    scored = torch.zeros((len(batch), width), dtype=torch.bool)  # positions whose token is scored
    for row, (prompt, completion) in enumerate(batch):
        seq = prompt + completion
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        scored[row, len(prompt) : len(seq)] = True
    device = next(model.parameters()).device
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)  # position t predicts token t + 1
    token_lp = log_probs.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
    return (token_lp * scored[:, 1:].to(device)).sum(dim=-1).cpu()


def implicit_rewards(
    base_model: str,
    adapter_path: str,
    items: Sequence[tuple[Messages, str]],
    *,
    beta: float,
    batch_size: int = 32,
    cpu_threads: int | None = 1,
) -> list[float]:
    """β·(log π − log π_ref) of each (messages, completion), in input order."""
    import torch

    from models.loading import load_model, load_tokenizer, torch_threads

    tok = load_tokenizer(base_model)
    encoded = [completion_ids(tok, messages, text) for messages, text in items]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]) + len(encoded[i][1]))
    rewards = [0.0] * len(encoded)
    with torch_threads(cpu_threads), torch.inference_mode():
        model = load_model(base_model, adapter_path, dtype="float32", merge=False)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = [encoded[i] for i in rows]
            policy = sequence_log_probs(model, batch, tok.pad_token_id)
            with model.disable_adapter():
                reference = sequence_log_probs(model, batch, tok.pad_token_id)
            for i, value in zip(rows, (beta * (policy - reference)).tolist(), strict=True):
                rewards[i] = value
    return rewards
