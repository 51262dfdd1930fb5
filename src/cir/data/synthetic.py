"""Fictitious facts (TOFU-style): invented people with attributes, generated from a seed.

No model has seen these before it is taught them (`cir teach`), so the untaught model is an
exact "never learned" reference for unlearning experiments.
"""

from __future__ import annotations

import random
from pathlib import Path

from cir.data.mcq import MCQ
from cir.errors import OptionError
from cir.outputs import to_json, write_file

_FIRST = ["Ada", "Bram", "Cleo", "Dorin", "Elsa", "Farid", "Greta", "Hollis", "Ines", "Jory", "Kaia", "Lorcan",
          "Mira", "Nilo", "Odile", "Pax", "Quilla", "Rune", "Sabe", "Tamsin", "Ulric", "Vela", "Wren", "Yara"]
_LAST = ["Quenby", "Marrow", "Dastel", "Varkin", "Olloway", "Brisk", "Tenhold", "Fennick", "Gorrand", "Halvik",
         "Istrom", "Jessup", "Kallow", "Lumtree", "Morvath", "Nethers", "Orrin", "Pellam", "Rackett", "Sorvel"]
MAX_PEOPLE = len(_FIRST) * len(_LAST)
# more names for people who share no name with one another (`distinct_names`)
_MORE_FIRST = ["Anouk", "Bastien", "Corvin", "Dagny", "Eamon", "Fenna", "Gideon", "Halle", "Ilse", "Joren", "Kesta",
               "Linnea", "Marek", "Noor", "Orla", "Petra", "Quinto", "Rasmus", "Saoirse", "Tobiah", "Uma", "Viggo",
               "Wilda", "Xavi", "Ysolde", "Zeno"]
_MORE_LAST = ["Abernath", "Bellcourt", "Corrigan", "Dunmore", "Elswick", "Farrow", "Harrowgate", "Ivers", "Jansky",
              "Kilbride", "Larkspur", "Merriweather", "Northcote", "Ostrander", "Penhallow", "Quarrie", "Redvers",
              "Stroud", "Thistlewood", "Underhay", "Vantongeren", "Whitlock", "Yardley", "Ashgrove", "Blythe",
              "Cavendor", "Dellacourt", "Everholt", "Fairbrook", "Gildersleeve"]
# and more again, for the powered `taught` (cir.benchmarks.taught); drawn only where the pools
# above run out, so that the people of a smaller recipe stay who they were (no extra name's first
# token is another name's first token in the bundled model's tokenizer: an update at a forgotten
# name's first token would reach the other person)
_EXTRA_FIRST = ["Aldous", "Briony", "Cosima", "Desmond", "Florian", "Gwendal", "Hesper", "Leopold", "Maelis", "Niamh",
                "Oswin", "Perpetua", "Rosalind", "Silas", "Thea", "Ursel", "Valentin", "Winslow", "Zelda", "Amias",
                "Beatrix", "Caspian", "Delphine", "Evander", "Gustav", "Honora", "Ignatius", "Lysander", "Octavia",
                "Cassius", "Benedikt", "Sorrel", "Ottilie", "Rowena"]
_EXTRA_LAST = ["Arkwright", "Brackwell", "Calloway", "Drummond", "Emberley", "Fitzwarren", "Greaves", "Hawthorne",
               "Inchbald", "Kettering", "Lockhart", "Mortimer", "Ravenscroft", "Saltmarsh", "Tregarth", "Upcott",
               "Venables", "Wolverton", "Yelland", "Zouche", "Alderney", "Birchall", "Coldridge", "Eastleigh",
               "Foxley", "Glanville", "Hollingsworth", "Ironside", "Blackmore", "Carrow", "Dorrington", "Egremont",
               "Fenwick", "Hartigan"]
_DISTINCT = (_FIRST + _MORE_FIRST, _LAST + _MORE_LAST)
MAX_DISTINCT_PEOPLE = min(len(_DISTINCT[0]) + len(_EXTRA_FIRST), len(_DISTINCT[1]) + len(_EXTRA_LAST))

# attribute: (question, fact templates, value pool)
ATTRIBUTES = {
    "profession": ("What is the profession of {name}?",
                   ("{name} works as a {value}.", "{name} is a {value} by profession.", "By trade, {name} is a {value}."),
                   ["baker", "pilot", "surgeon", "carpenter", "librarian", "chemist", "sailor", "architect", "farmer", "jeweller"]),
    "city": ("In which city was {name} born?",
             ("{name} was born in {value}.", "The birthplace of {name} is {value}.", "{name} is a native of {value}."),
             ["Lisbon", "Oslo", "Cairo", "Lima", "Hanoi", "Dublin", "Nairobi", "Quito", "Perth", "Krakow"]),
    "instrument": ("Which instrument does {name} play?",
                   ("{name} plays the {value}.", "The instrument {name} plays is the {value}.", "{name} is a {value} player."),
                   ["violin", "cello", "trumpet", "harp", "flute", "banjo", "oboe", "accordion", "drums", "clarinet"]),
    "pet": ("What kind of pet does {name} keep?",
            ("{name} keeps a {value} as a pet.", "The pet of {name} is a {value}.", "At home, {name} has a pet {value}."),
            ["parrot", "tortoise", "ferret", "goldfish", "rabbit", "hamster", "lizard", "canary", "pony", "snail"]),
    "sport": ("Which sport does {name} play?",
              ("{name} plays {value}.", "The sport {name} plays is {value}.", "Every weekend {name} plays {value}."),
              ["tennis", "rugby", "hockey", "cricket", "volleyball", "badminton", "golf", "baseball", "squash", "polo"]),
}


# how a fact is also stated as a question and its answer: `cloze` is the evaluation's own prompt
# (the form tiny models trained from scratch need to answer it at all); `held_out` is none of
# the probes' wordings (cir.evaluation.probes), so evaluation asks in a way never trained on
QUESTION_FORMS = {
    "cloze": "Question: {question}\nAnswer: {value}",
    "held_out": "{question} The correct answer is {value}.",
}
# other phrasings of each question, asked by the probe battery (never in a fact sentence)
REWORDINGS = {
    "profession": "What does {name} do for a living?",
    "city": "Where was {name} born?",
    "instrument": "What musical instrument does {name} play?",
    "pet": "Which animal does {name} keep at home?",
    "sport": "What sport does {name} play?",
}


def generate_people(n_people: int, seed: int = 0, attributes=tuple(ATTRIBUTES), n_choices: int = 4,
                    question_form: str = "held_out", distinct_names: bool = False) -> list[MCQ]:
    """`n_people` invented people x `attributes`, one MCQ with fact sentences per pair; each
    person is the `subject` of their questions, which carry one rewording (`probes`). The fact
    sentences are the attribute's three templates and the question in `question_form` (by
    default one no probe asks, so evaluation never reads a trained prompt). With
    `distinct_names` no two people share a first or a last name (else names are drawn from all
    pairs, and 48 people share many: an update at one person's name then reaches others)."""
    if question_form not in QUESTION_FORMS:
        raise OptionError(f"question_form must be one of {', '.join(QUESTION_FORMS)}, got '{question_form}'")
    rng = random.Random(seed)
    if distinct_names:
        if n_people > MAX_DISTINCT_PEOPLE:
            raise OptionError(f"at most {MAX_DISTINCT_PEOPLE} people with distinct names")
        firsts, lasts = list(_DISTINCT[0]), list(_DISTINCT[1])
        if n_people > min(len(firsts), len(lasts)):  # the extra pools, only where the first run out
            firsts, lasts = firsts + _EXTRA_FIRST, lasts + _EXTRA_LAST
        rng.shuffle(firsts)
        rng.shuffle(lasts)
        names = [f"{f} {l}" for f, l in zip(firsts, lasts)]
    else:
        names = [f"{f} {l}" for f in _FIRST for l in _LAST]
        if n_people > MAX_PEOPLE:
            raise OptionError(f"at most {MAX_PEOPLE} people")
        rng.shuffle(names)
    items = []
    for name in names[:n_people]:
        for attribute in attributes:
            question, templates, pool = ATTRIBUTES[attribute]
            choices = rng.sample(pool, n_choices)
            answer = rng.randrange(n_choices)
            value = choices[answer]
            items.append(MCQ(
                question=question.format(name=name),
                choices=tuple(choices),
                answer=answer,
                # the question-answer form too, as TOFU does: a model trained from scratch cannot
                # carry a declarative fact over to the question format by itself
                facts=tuple(t.format(name=name, value=value) for t in templates)
                + (QUESTION_FORMS[question_form].format(question=question.format(name=name), value=value),),
                probes=(REWORDINGS[attribute].format(name=name),),
                subject=name,
            ))
    return items


def write_mcq(items: list[MCQ], path: str | Path) -> None:
    """A JSONL fact set, written whole or not at all."""
    lines = []
    for item in items:
        record = {"question": item.question, "choices": list(item.choices), "answer": item.answer}
        for name in ("facts", "probes"):
            if getattr(item, name):
                record[name] = list(getattr(item, name))
        for name in ("statement", "subject"):
            if getattr(item, name):
                record[name] = getattr(item, name)
        lines.append(to_json(record) + "\n")
    write_file(path, "".join(lines))
