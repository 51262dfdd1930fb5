"""General text: the default corpus, text sampled from the original model itself, and its split
into the retain half a run trains on and the held-out half its disruption is read on.

Disruption is measured on text the original model finds natural, so it works offline and
for any model. Samples are seeded and cached under the user cache, keyed by a fingerprint
of the model's weights.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch

from cir.errors import InputError
from cir.models import cache_dir
from cir.outputs import stage

PROMPTS_FILE = Path(__file__).parent / "prompts.txt"


def builtin_prompts() -> list[str]:
    return [p for p in PROMPTS_FILE.read_text(encoding="utf-8").splitlines() if p.strip()]


def fingerprint(model) -> str:
    """A short hash of the model's config and a sample of its weights."""
    h = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    for name, param in list(model.named_parameters())[:: max(1, len(list(model.parameters())) // 8)]:
        h.update(name.encode())
        h.update(param.detach().float().flatten()[:4096].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def sample_general_text(model, tokenizer, *, samples_per_prompt: int = 2, max_new_tokens: int = 40,
                        seed: int = 0, batch_size: int = 32) -> list[str]:
    """Sample continuations of the built-in prompts (temperature 0.8), cached per model and settings."""
    key = f"{fingerprint(model)}-{samples_per_prompt}-{max_new_tokens}-{seed}"
    path = cache_dir() / "general_text" / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    prompts = [p for p in builtin_prompts() for _ in range(samples_per_prompt)]
    stage(f"sampling {len(prompts)} general texts from the model (once: kept in {path.parent})")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    texts = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end
    try:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            enc = tokenizer(batch, return_tensors="pt", padding=True).to(model.device)
            out = model.generate(**enc, do_sample=True, temperature=0.8, top_p=0.95, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id)
            new = out[:, enc["input_ids"].shape[1]:]
            for prompt, tokens in zip(batch, new):
                texts.append(prompt + tokenizer.decode(tokens, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        torch.random.set_rng_state(generator_state)
    _cache(texts, path)
    return texts


def _cache(texts: list[str], path: Path) -> None:
    """Keep the samples for the next run; a cache that cannot be written is left out, with a warning."""
    from cir.outputs import write_json

    try:
        write_json(path, texts, indent=None)
    except OSError as error:
        warnings.warn(f"general text not cached: cannot write {path} ({error.strerror})", stacklevel=3)


def split_general_text(texts: list[str], samples_per_prompt: int = 2) -> tuple[list[str], list[str]]:
    """(retain, held-out) halves split by prompt, so disruption is measured on prompts the retain step never saw."""
    retain = [t for i, t in enumerate(texts) if (i // samples_per_prompt) % 2 == 0]
    held_out = [t for i, t in enumerate(texts) if (i // samples_per_prompt) % 2 == 1]
    return retain, held_out


def general_text_split(model, tokenizer, spec: str | None = None) -> tuple[list[str], list[str]]:
    """(retain, held-out) general text: a user corpus split in two, or the model's own samples."""
    from cir.data.text import load_texts

    if spec:
        texts = load_texts(spec)
        if len(texts) < 2:
            raise InputError("need at least 2 documents to split into retain and held-out halves", path=spec)
        return texts[0::2], texts[1::2]
    return split_general_text(sample_general_text(model, tokenizer))
