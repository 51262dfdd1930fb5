"""`subjects`: everything the built-in topics say about a set of countries (capital, language,
currency, continent), as RWKU forgets whole entities; the same relations for the other
countries, and the other topics, are kept. T and V hold different countries."""

from __future__ import annotations

import random

from cir.benchmarks.base import Setting, register_benchmark
from cir.data.mcq import MCQ, load_mcq, topic_sets

COUNTRY_TOPICS = ("capitals", "languages", "currencies", "continents")

# Bulgaria is left out: its currency question asks about the lev, which the euro replaced on
# 2026-01-01, so its facts are not all of the present tense the other countries' are
SUBJECT_COUNTRIES = 12


def country_facts() -> dict[str, list[MCQ]]:
    """Each country asked about in every one of the country topics: its questions, in topic order."""
    by_topic = {topic: load_mcq(topic) for topic in COUNTRY_TOPICS}
    subjects = [{item.subject for item in items} for items in by_topic.values()]
    common = sorted(set.intersection(*subjects) - {"Bulgaria"})
    return {country: [item for items in by_topic.values() for item in items if item.subject == country]
            for country in common}


@register_benchmark("subjects", drawn=True)
def subjects(model, tokenizer, countries: int = SUBJECT_COUNTRIES, seed: int = 0, **_) -> Setting:
    """F: every country-topic fact about `countries` countries drawn with `seed`; the other
    countries' facts (per topic) and the other built-in topics are kept."""
    facts = country_facts()
    chosen = set(random.Random(seed).sample(sorted(facts), countries))
    forget = [item for country in sorted(chosen) for item in facts[country]]
    asked = {item.question for item in forget}
    topics = {topic: [item for item in items if item.question not in asked]
              for topic, items in topic_sets().items()}
    return Setting("subjects", model, tokenizer, forget, topics, notes={"countries": sorted(chosen)})
