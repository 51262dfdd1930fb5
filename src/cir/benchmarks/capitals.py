"""`capitals`: the capital cities of 48 countries, pretrained knowledge among the most frequent of
the web, whose subjects the other country topics share (their language, currency and continent
are kept). No "never learned" reference exists: the hard case. Any built-in topic can be
forgotten the same way (`topic_setting`)."""

from __future__ import annotations

from cir.benchmarks.base import Setting, register_benchmark
from cir.data.mcq import load_mcq, topic_sets


def topic_setting(topic: str, model, tokenizer) -> Setting:
    """One built-in topic forgotten, the others kept."""
    forget = load_mcq(topic)
    return Setting(topic, model, tokenizer, forget, topic_sets(excluding=forget))


@register_benchmark("capitals")
def capitals(model, tokenizer, **_) -> Setting:
    return topic_setting("capitals", model, tokenizer)
