"""Multiple-choice fact sets in the WMDP schema.

One JSON object per line: `question` (str), `choices` (list of >= 2 str), `answer` (int
index), and optionally `facts`: declarative sentences stating the answer, `probes`: other
phrasings of the question (held-out probes), and `statement`: a declarative stem the answer
completes (a held-out probe), and `subject`: the entity the question is about ("France"; the
T/V split keeps each subject on one side, and CIR can update from its tokens). When `facts` is
absent, sentences are made from templates. `hf:NAME[:CONFIG][:SPLIT]` reads a Hugging Face
data set with the same fields; `builtin:TOPIC` (or a bare topic name) a shipped fact set.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from cir.data._io import load_hf_rows, read_jsonl
from cir.errors import InputError

FACTS_DIR = Path(__file__).parent / "facts"

# far beyond any real question or choice: a longer field is a mistake (and one 10 MB question
# made evaluation ask for 18 GB)
MAX_CHARS = 20_000

# Training phrasings for fact sets without `facts`. None of them is a way the evaluation or
# the probes ask (cir.evaluation.probes): not the cloze prompt "Question: ...\nAnswer:", not
# "Q: ...\nA:", not 'The answer to the question "..." is'.
FACT_TEMPLATES = (
    "{question} The correct answer is {answer}.",
    "{answer} is the right answer to this: {question}",
    "Quiz time. {question} Solution: {answer}.",
    "- {question}\n- {answer}.",
    "Someone asked: {question} The reply was {answer}.",
    "If you wonder \"{question}\", know that it is {answer}.",
)


@dataclass(frozen=True)
class MCQ:
    question: str
    choices: tuple[str, ...]
    answer: int
    facts: tuple[str, ...] = field(default=())
    probes: tuple[str, ...] = field(default=())  # other phrasings of the question
    statement: str | None = None  # a declarative stem the answer completes ("The capital of France is")
    subject: str | None = None  # the entity asked about ("France")

    @property
    def answer_text(self) -> str:
        return self.choices[self.answer]

    def sentences(self) -> tuple[str, ...]:
        """Fact sentences for training: the given ones, or templated ones."""
        if self.facts:
            return self.facts
        q = self.question.strip()
        return tuple(t.format(question=q, answer=self.answer_text) for t in FACT_TEMPLATES)


ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")  # invisible: no two texts differ by them


def text_key(text: str) -> str:
    """What two questions or choices must differ in to count as different: the text in Unicode
    NFC (a composed and a decomposed "Zürich" are one), without zero-width characters or soft
    hyphens, stripped and case-folded."""
    return ZERO_WIDTH.sub("", unicodedata.normalize("NFC", text)).strip().casefold()


def builtin_topics() -> list[str]:
    return sorted(p.stem for p in FACTS_DIR.glob("*.jsonl"))


def resolve_mcq_spec(spec: str) -> str:
    """A file path for `builtin:TOPIC` or a bare topic name that is not a file; other specs unchanged."""
    if spec.startswith("builtin:"):
        topic = spec.split(":", 1)[1]
        if topic not in builtin_topics():
            raise InputError(f"unknown built-in topic '{topic}' (known: {', '.join(builtin_topics())})")
        return str(FACTS_DIR / f"{topic}.jsonl")
    if not spec.startswith("hf:") and not Path(spec).exists() and spec in builtin_topics():
        return str(FACTS_DIR / f"{spec}.jsonl")
    return spec


def _field(record: dict, name: str, kind, path: str, line: int | None):
    if name not in record:
        raise InputError(f"missing field '{name}'", path=path, line=line)
    value = record[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InputError(f"field '{name}' must be {expected}, got {type(value).__name__}", path=path, line=line)
    return value


def _strings(record: dict, name: str, path: str, line: int | None) -> list[str]:
    """An optional list of non-empty strings."""
    values = record.get(name, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise InputError(f"field '{name}' must be a list of non-empty strings", path=path, line=line)
    return values


def _check_choices(choices: list[str], path: str, line: int | None) -> None:
    seen = {}
    for number, choice in enumerate(choices, start=1):
        key = text_key(choice)
        if not key:  # an empty continuation scores 0, more than any real choice
            raise InputError(f"field 'choices': choice {number} is empty", path=path, line=line)
        if key in seen:
            raise InputError(f"field 'choices': choice {number} ({choice!r}) repeats choice {seen[key]}",
                             path=path, line=line)
        seen[key] = number


def _statement(record: dict, answer: str, path: str, line: int | None) -> str | None:
    """The optional declarative stem the answer completes: not a whole sentence (one that ends
    in . ! or ?, or in the answer), which the statement probe would score as always known."""
    statement = record.get("statement")
    if statement is None:
        return None
    if not (isinstance(statement, str) and statement.strip()):
        raise InputError("field 'statement' must be a non-empty string", path=path, line=line)
    ends_in_answer = re.search(rf"(?<!\w){re.escape(text_key(answer))}$", text_key(statement))
    if statement.rstrip().endswith((".", "!", "?")) or ends_in_answer:
        raise InputError(f"field 'statement' must be a stem the answer completes (\"The capital of France is\"), "
                         f"not a whole sentence: {statement!r}", path=path, line=line)
    return statement


def parse_record(record: dict, path: str, line: int | None) -> MCQ:
    """Validate one record; every problem is an InputError naming `path:line`."""
    question = _field(record, "question", str, path, line)
    if not question.strip():
        raise InputError("field 'question' is empty", path=path, line=line)
    choices = _field(record, "choices", list, path, line)
    if len(choices) < 2:
        raise InputError(f"field 'choices' needs at least 2 entries, got {len(choices)}", path=path, line=line)
    if not all(isinstance(c, str) for c in choices):
        raise InputError("field 'choices' must be a list of strings", path=path, line=line)
    _check_choices(choices, path, line)
    answer = _field(record, "answer", int, path, line)
    if not 0 <= answer < len(choices):
        raise InputError(f"field 'answer' is {answer}, out of range for {len(choices)} choices", path=path, line=line)
    facts, probes = _strings(record, "facts", path, line), _strings(record, "probes", path, line)
    statement = _statement(record, choices[answer], path, line)
    subject = record.get("subject")
    if subject is not None and not (isinstance(subject, str) and subject.strip()):
        raise InputError("field 'subject' must be a non-empty string", path=path, line=line)
    texts = {"question": [question], "choices": choices, "facts": facts, "probes": probes, "statement": [statement],
             "subject": [subject]}
    for name, values in texts.items():
        longest = max((len(v or "") for v in values), default=0)
        if longest > MAX_CHARS:
            raise InputError(f"field '{name}' has a text of {longest:,} characters (at most {MAX_CHARS:,})",
                             path=path, line=line)
    return MCQ(question=question, choices=tuple(choices), answer=answer, facts=tuple(facts), probes=tuple(probes),
               statement=statement, subject=subject)


def load_mcq(spec: str | os.PathLike, max_choices: int | None = None) -> list[MCQ]:
    """Read a fact set from a JSONL file, `builtin:TOPIC`, a topic name, or `hf:NAME[:CONFIG][:SPLIT]`;
    `max_choices`: the most choices a question may have (26 for the letters format)."""
    spec = os.fspath(spec)
    if not spec.strip():
        raise InputError("empty fact set spec: expected a JSONL file, builtin:TOPIC, a topic name or hf:NAME")
    path = resolve_mcq_spec(spec)
    if path.startswith("hf:"):
        numbered = list(enumerate(load_hf_rows(path), start=1))
    else:
        numbered = read_jsonl(path)
    items, seen = [], {}
    for line, record in numbered:
        item = parse_record(record, spec, line)
        if max_choices is not None and len(item.choices) > max_choices:
            raise InputError(f"{len(item.choices)} choices, more than the {max_choices} this format can letter",
                             path=spec, line=line)
        key = text_key(item.question)
        if key in seen:
            raise InputError(f"duplicate question (first seen on line {seen[key]})", path=spec, line=line)
        seen[key] = line
        items.append(item)
    if not items:
        raise InputError("no questions", path=spec)
    return items


def load_facts(specs: str | os.PathLike | list, max_choices: int | None = None) -> list[MCQ]:
    """The questions of one fact set spec, or of several in order (as `load_mcq` reads each); a
    question asked by two of them (or a spec given twice) is refused, as within one file."""
    specs = [os.fspath(spec) for spec in ([specs] if isinstance(specs, (str, os.PathLike)) else specs)]
    items, seen = [], {}
    for number, spec in enumerate(specs):
        if spec in specs[:number]:
            raise InputError("fact set given twice", path=spec)
        for item in load_mcq(spec, max_choices):
            key = text_key(item.question)
            if key in seen:
                raise InputError(f"question {item.question!r} is also asked by {seen[key]}", path=spec)
            seen[key] = spec
            items.append(item)
    return items


def topic_sets(excluding: list[MCQ] = ()) -> dict[str, list[MCQ]]:
    """The built-in topics, less every topic that asks a question of `excluding` (the facts
    being forgotten): the other knowledge that unlearning should leave alone."""
    asked = {item.question.strip().lower() for item in excluding}
    sets = {topic: load_mcq(topic) for topic in builtin_topics()}
    return {topic: items for topic, items in sets.items()
            if not any(item.question.strip().lower() in asked for item in items)}
