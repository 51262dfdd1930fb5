"""The row: one measurement of a model, the single record that travels from measurement to table to
JSON. The demo, the comparison, the attacks, the audit-style reports and the bench scripts all
make and read it, by field name.

A row holds, per fact set, a Score: accuracy and the correct answer's probability (renormalised
over the choices), with each question's reading kept so that intervals can be drawn over
questions; V (the held-out forget questions) in the cloze prompt, in every probe of the battery,
and in the worst probe; and the stage or attack it belongs to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

STAGES = ("before", "after unlearning", "attack")


@dataclass
class Score:
    """One fact set read one way. `accuracy`: the share answered; `probability`: the mean
    probability of the correct choice, renormalised over the choices (the headline score; None
    where not read); `answer_probability`: the mean of the correct answer's own probability, the
    geometric mean of its tokens', not renormalised (RepSelect's score); `correct`, `probs`,
    `answer_probs`: each question's, in order (empty where not kept); `interval`: the 95%
    interval of each score by name, where one was drawn."""

    accuracy: float
    probability: float | None = None
    n: int = 0
    correct: list[bool] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    interval: dict[str, tuple[float, float]] = field(default_factory=dict)
    answer_probability: float | None = None
    answer_probs: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, result) -> Score:
        """From an MCQResult (cir.evaluation.scoring) or a BatteryResult's probe."""
        return cls(result.accuracy, result.correct_prob, result.n, list(result.correct), list(result.probs),
                   answer_probability=result.answer_prob, answer_probs=list(result.answer_probs))

    def to_json(self) -> dict:
        out = {"accuracy": self.accuracy, "probability": self.probability, "n": self.n}
        if self.answer_probability is not None:
            out["answer_probability"] = self.answer_probability
        if self.correct:
            out |= {"correct": self.correct, "probs": self.probs}
        if self.answer_probs:
            out["answer_probs"] = self.answer_probs
        if self.interval:
            out["interval"] = {name: list(bounds) for name, bounds in self.interval.items()}
        return out

    @classmethod
    def from_json(cls, data: dict | float) -> Score:
        if isinstance(data, (int, float)):  # a record written before scores had fields: its accuracy
            return cls(float(data))
        nan = float("nan")  # JSON writes NaN as null: nothing could be read of the model
        interval = {name: tuple(bounds) for name, bounds in data.get("interval", {}).items()}
        return cls(nan if data["accuracy"] is None else data["accuracy"], data.get("probability"), data.get("n", 0),
                   list(data.get("correct", [])),
                   list(data.get("probs", [])), interval, data.get("answer_probability"),
                   list(data.get("answer_probs", [])))


@dataclass
class Row:
    """One measurement of a model at one stage: `stage` is "before", "after unlearning" or
    "attack" (then `attack` is the attack's key and `label` its words). `sets`: each fact set's
    cloze Score (the forget set's whole, the kept sets); `V`: the held-out forget questions in
    cloze; `probes`: V under each probe of the battery; `V_worst`: the worst probe (the highest
    accuracy, at least a relearning attack's best cloze epoch); `worst_probe`: its name.
    `seconds`: what the attack took; `record`: the attack's own account (a relearning
    attack's V per epoch); `broken`: why an attack is not counted (it broke the model), else None."""

    stage: str
    V: Score
    V_worst: Score
    sets: dict[str, Score] = field(default_factory=dict)
    probes: dict[str, Score] = field(default_factory=dict)
    worst_probe: str | None = None
    attack: str | None = None
    label: str | None = None
    seconds: float | None = None
    record: dict | None = None
    broken: str | None = None

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"a row's stage is one of {', '.join(STAGES)}, got '{self.stage}'")

    @property
    def name(self) -> str:
        """How tables name the row: its stage, or the attack's label."""
        return self.label if self.stage == "attack" and self.label else self.stage

    def accuracy(self, fact_set: str) -> float:
        return self.sets[fact_set].accuracy

    def with_attack(self, key: str, label: str, seconds: float | None = None) -> Row:
        self.stage, self.attack, self.label, self.seconds = "attack", key, label, seconds
        return self

    def to_json(self, per_question: bool = True) -> dict:
        def score(s: Score) -> dict:
            data = s.to_json()
            if not per_question:
                for key in ("correct", "probs", "answer_probs"):
                    data.pop(key, None)
            return data

        out = {key: value for key, value in asdict(self).items()
               if key not in ("V", "V_worst", "sets", "probes") and value is not None}
        return out | {"V": score(self.V), "V_worst": score(self.V_worst),
                      "sets": {name: score(s) for name, s in self.sets.items()},
                      "probes": {name: score(s) for name, s in self.probes.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Row:
        return cls(stage=data["stage"], V=Score.from_json(data["V"]), V_worst=Score.from_json(data["V_worst"]),
                   sets={name: Score.from_json(s) for name, s in data.get("sets", {}).items()},
                   probes={name: Score.from_json(s) for name, s in data.get("probes", {}).items()},
                   worst_probe=data.get("worst_probe"), attack=data.get("attack"), label=data.get("label"),
                   seconds=data.get("seconds"), record=data.get("record"), broken=data.get("broken"))
