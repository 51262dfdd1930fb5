"""Named benchmarks, one module each: what is forgotten, what must be kept, and what "never learned" looks like.

Every benchmark has a forget set F (split into T and V by subject: no subject on both sides), the
other knowledge the collateral budget watches and the tables report, and the attacks of the
demo. They differ in how the model came to know F:

- `capitals`: the capital cities of 48 countries, pretrained knowledge among the most frequent
  of the web, whose subjects the other country topics share (their language, currency and
  continent are kept). No "never learned" reference exists: the hard case.
- `subjects`: everything the built-in topics say about a set of countries (capital, language,
  currency, continent), as RWKU forgets whole entities; the same relations for the other
  countries, and the other topics, are kept. T and V hold different countries.
- `taught`: invented people x attributes (TOFU-like), taught to the model by fine-tuning
  (cached, keyed by the recipe and the model). A third of the taught people are forgotten,
  the rest are kept (knowledge of the same kind, learnt the same way). The model before
  teaching is the exact "never learned" reference: the residual of an attack is V on the
  unlearned model minus V on the never-taught one under the same attack. The exact reference
  (TOFU's retain model) is the model taught only the kept people, by the same recipe and
  replay: what unlearning should have produced. The never-taught people's sentences are the
  non-members of membership inference.

A benchmark is one module with a maker registered by `@register_benchmark` (cir.benchmarks.base):
`make_setting(name, model, tokenizer)` returns its Setting, which the demo and the comparison
read alike.
"""

from cir.benchmarks.base import (BENCHMARKS, DRAWN, METHOD_DEFAULTS, Setting, benchmark_names, check_benchmark,
                                 make_setting, method_defaults, register_benchmark)
from cir.benchmarks import capitals, subjects, taught  # each registers itself
from cir.benchmarks.capitals import topic_setting
from cir.benchmarks.subjects import COUNTRY_TOPICS, SUBJECT_COUNTRIES, country_facts
from cir.benchmarks.taught import TeachRecipe, invented_people, knowledge, teach, taught_model

__all__ = ["BENCHMARKS", "COUNTRY_TOPICS", "DRAWN", "METHOD_DEFAULTS", "SUBJECT_COUNTRIES", "Setting", "TeachRecipe",
           "benchmark_names", "capitals", "check_benchmark", "country_facts", "invented_people", "knowledge",
           "make_setting", "method_defaults", "register_benchmark", "subjects", "taught", "taught_model", "teach",
           "topic_setting"]
