"""`taught`: invented people x attributes (TOFU-like), taught to the model by fine-tuning (cached,
keyed by the recipe and the model). A third of the taught people are forgotten, the rest are
kept (knowledge of the same kind, learnt the same way). The model before teaching is the exact
"never learned" reference; the model taught only the kept people, by the same recipe and
replay, is TOFU's retain model: what unlearning should have produced. The never-taught people's
sentences are the non-members of membership inference."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, replace

from cir.benchmarks.base import Setting, register_benchmark
from cir.data.mcq import MCQ, topic_sets
from cir.errors import OptionError, TeachingFellShort

REPLAY_LOSSES = ("kl", "tokens")


@dataclass(frozen=True)
class TeachRecipe:
    """How the invented people are made and taught. Changing any field teaches a new model."""

    people: int = 36  # taught; a third of them are forgotten
    strangers: int = 12  # never taught: membership inference's non-members
    attributes: tuple[str, ...] = ("profession", "city", "instrument")
    seed: int = 0
    # no two people (taught or not) share a first or a last name: an update at a forgotten
    # person's name reaches every kept person who shares a part of it (docs/sweep.md, "Benchmark
    # `taught`", the people's names)
    distinct_names: bool = True
    # the fewest epochs that teach both sets past min_accuracy; more cost general text and the
    # topics (docs/sweep.md, "The `taught` benchmark's teaching")
    epochs: int = 5
    lr: float = 3e-4
    params: str = "mlp"  # the MLP projections carry what is taught
    batch_size: int = 16
    question_form: str = "held_out"  # never the probes' wording (cir.data.synthetic)
    # the retain half of the model's own general-text samples, trained beside the facts in every
    # epoch (the held-out half, which the disruption budget reads, never is): without it teaching
    # skews the built-in topics' answers (docs/sweep.md, "The `taught` benchmark's teaching")
    replay: bool = True
    # how the replayed text is trained: `kl` keeps the model's own next-token distributions there
    # (the model before teaching is the teacher); `tokens` learns the sampled tokens, which the
    # model then repeats, and raises its loss on general text it never saw (docs/sweep.md, "The `taught` benchmark's teaching")
    replay_loss: str = "kl"
    # batches of sentences of about one length (cir.training.finetune.index_batches): mixed batches pad
    # the short facts to the replayed passages' length (docs/sweep.md, "The `taught` benchmark's teaching")
    batching: str = "by_length"
    min_accuracy: float = 0.9  # of every taught set, in cloze and in recall

    def __post_init__(self):
        from cir.data.synthetic import QUESTION_FORMS
        from cir.training.finetune import BATCHING

        for name, known in (("question_form", QUESTION_FORMS), ("batching", BATCHING), ("replay_loss", REPLAY_LOSSES)):
            if getattr(self, name) not in known:
                raise OptionError(f"{name} must be one of {', '.join(known)}, got '{getattr(self, name)}'")

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def invented_people(recipe: TeachRecipe) -> tuple[list[MCQ], list[MCQ], list[MCQ]]:
    """(forget, kept, strangers): the taught people's questions, a third forgotten, the rest kept;
    and the never-taught people's, each person's questions together."""
    from cir.data.synthetic import generate_people

    per_person = len(recipe.attributes)
    items = generate_people(recipe.people + recipe.strangers, seed=recipe.seed, attributes=recipe.attributes,
                            question_form=recipe.question_form, distinct_names=recipe.distinct_names)
    taught, strangers = items[: recipe.people * per_person], items[recipe.people * per_person:]
    n_forget = recipe.people // 3 * per_person
    return taught[:n_forget], taught[n_forget:], strangers


def knowledge(model, tokenizer, sets: dict[str, list[MCQ]]) -> dict[str, dict[str, float]]:
    """Per set, cloze and recall accuracy."""
    from cir.evaluation.probes import cloze_and_recall

    return {name: dict(zip(("cloze", "recall"), cloze_and_recall(model, tokenizer, items)))
            for name, items in sets.items()}


def teach(model, tokenizer, recipe: TeachRecipe, progress: bool = True, on_epoch=None, teacher=None,
          retain: bool = False) -> dict:
    """Fine-tune `model` (in place) on the taught people's fact sentences (with `retain`, only the
    kept people's: the retain model); returns what it knows of each taught set before and after.
    Refuses a model that does not reach the recipe's `min_accuracy` on every set it was taught,
    in cloze and in recall. `on_epoch(epoch, loss)`: called after
    each epoch (cir.training.finetune). `teacher`: the model before teaching, whose predictions the replayed
    text is trained towards (not trained itself; default: a copy of `model` as it is now)."""
    from cir.evaluation.scoring import text_loss
    from cir.training.finetune import finetune
    from cir.data.general import general_text_split

    forget, kept, _ = invented_people(recipe)
    sets = {"forget": forget, "kept": kept}
    before = knowledge(model, tokenizer, sets)
    replayed, heldout = general_text_split(model, tokenizer)
    loss_before = text_loss(model, tokenizer, heldout)
    taught_sets = ["kept"] if retain else ["forget", "kept"]
    sentences = [s for name in taught_sets for item in sets[name] for s in item.sentences()]
    keep = []
    if recipe.replay and recipe.replay_loss == "tokens":
        sentences += replayed
    elif recipe.replay:
        keep, teacher = replayed, teacher or copy.deepcopy(model).eval().requires_grad_(False)
    finetune(model, tokenizer, sentences, epochs=recipe.epochs, lr=recipe.lr, params=recipe.params,
             batch_size=recipe.batch_size, seed=recipe.seed, batching=recipe.batching, keep=keep, teacher=teacher,
             progress=progress, on_epoch=on_epoch)
    del teacher
    after = knowledge(model, tokenizer, sets)
    short = [f"{name} {kind} {value:.2f}" for name, scores in after.items() for kind, value in scores.items()
             if name in taught_sets and value is not None and value < recipe.min_accuracy]
    if short:
        raise TeachingFellShort(
            f"teaching the invented people reached less than {recipe.min_accuracy} ({', '.join(short)}) in "
            f"{recipe.epochs} epochs at lr {recipe.lr:g}: this model needs another recipe "
            "(cir.benchmarks.make_setting('taught', model, tokenizer, recipe=TeachRecipe(epochs=..., lr=...)))")
    # the held-out general text, never trained on: what teaching cost the model beyond the facts
    loss = {"before": loss_before, "after": text_loss(model, tokenizer, heldout)}
    return {"before": before, "after": after, "taught": taught_sets, "sentences": len(sentences),
            "kept_texts": len(keep), "heldout_text_loss": loss}


def taught_model(model, tokenizer, recipe: TeachRecipe, progress: bool = True,
                 on_epoch=None, retain: bool = False) -> tuple[object, dict]:
    """`model` taught by `recipe` (a new model; `model` is left as it is), and the teaching's
    record; with `retain`, the retain model (taught only the kept people). The taught weights are
    cached under the user cache, keyed by the recipe and the model's fingerprint (the retain
    model apart), so a second call loads them instead of teaching again.
    `on_epoch(student, epoch, loss)`: called after each epoch of a teaching (not for a cached model)."""
    from cir.data.general import fingerprint
    from cir.models import cache_dir, load_model, publish, save_model
    from cir.outputs import new_directory, stage, write_json

    target = cache_dir() / "taught" / f"{fingerprint(model)}-{recipe.key()}{'-retain' if retain else ''}"
    record_path = target / "teach.json"
    if not record_path.is_file():
        people = recipe.people - recipe.people // 3 if retain else recipe.people
        stage(f"teaching the {'retain ' if retain else ''}model {people} invented people x "
              f"{len(recipe.attributes)} attributes ({recipe.epochs} epochs; once: kept in {target})", progress)
        student = copy.deepcopy(model)
        started = time.perf_counter()
        record = teach(student, tokenizer, recipe, progress, teacher=model, retain=retain,
                       on_epoch=None if on_epoch is None else lambda epoch, loss: on_epoch(student, epoch, loss))
        record |= {"recipe": asdict(recipe), "seconds": time.perf_counter() - started}
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = new_directory(target.parent, f".{target.name}-")
        try:
            save_model(student, tokenizer, staging)
            write_json(staging / "teach.json", record)
            publish(staging, target, complete=lambda path: (path / "teach.json").is_file())
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        del student
    dtype = next(model.parameters()).dtype
    taught, _ = load_model(str(target), dtype=dtype, device=next(model.parameters()).device)
    return taught, json.loads(record_path.read_text()) | {"cached_at": str(target)}


# the update from the people's own name tokens, not the answer positions, and the saturating
# logit, which stops at a margin instead of pushing V below chance (a model that avoids the
# right answers still knows them): chosen on seed 0's split (docs/sweep.md, "Benchmark `taught`")
TAUGHT_DEFAULTS = {"cir.update_tokens": "subject", "cir.forget_loss": "saturating_logit", "cir.unlearning_rate": 1.5}

# the powered form: 60 people x all five attributes (F: 20 people, 100 questions; V: 50 a
# seed), so that a residual pooled over three seeds has a 95% half-width near 0.05 in P(correct)
# where the demo's form (36 x 3: V 18 a seed) has one near 0.13 a seed (docs/protocol.md, "Power")
POWERED = TeachRecipe(people=60, strangers=20, attributes=("profession", "city", "instrument", "pet", "sport"))


@register_benchmark("taught", method_defaults=TAUGHT_DEFAULTS, drawn=True)
def taught(model, tokenizer, recipe: TeachRecipe | None = None, progress: bool = True, seed: int | None = None,
           **_) -> Setting:
    """`seed`: the draw of the people (the recipe's seed; default its own, 0): people of their own,
    taught anew (and cached) for each."""
    return taught_setting("taught", model, tokenizer, drawn(recipe or TeachRecipe(), seed), progress)


@register_benchmark("taught-powered", method_defaults=TAUGHT_DEFAULTS, drawn=True)
def taught_powered(model, tokenizer, recipe: TeachRecipe | None = None, progress: bool = True,
                   seed: int | None = None, **_) -> Setting:
    return taught_setting("taught-powered", model, tokenizer, drawn(recipe or POWERED, seed), progress)


def drawn(recipe: TeachRecipe, seed: int | None) -> TeachRecipe:
    """`recipe` with its people drawn (and taught) with `seed` (None: as it is)."""
    return recipe if seed is None else replace(recipe, seed=seed)


def taught_setting(name: str, model, tokenizer, recipe: TeachRecipe, progress: bool = True) -> Setting:
    """The people of `recipe` taught (cached), a third forgotten; the model before teaching as
    the never-taught reference and the retain model made on first use."""
    forget, kept, strangers = invented_people(recipe)
    from cir.data.general import general_text_split

    student, record = taught_model(model, tokenizer, recipe, progress)
    topics = {"people (kept)": kept} | topic_sets()
    return Setting(name, student, tokenizer, forget, topics, reference=model,
                   nonmembers=[s for item in strangers for s in item.sentences()], notes={"teaching": record},
                   general=general_text_split(model, tokenizer),
                   retain_maker=lambda: taught_model(model, tokenizer, recipe, progress, retain=True)[0])
