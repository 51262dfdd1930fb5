"""is the knowledge gone or only hidden: probes, an attack grid and a reference, every number with its interval"""

from __future__ import annotations

from cir.cli.options import add_options
from cir.errors import InputError


def add_arguments(parser) -> None:
    from cir.attacks.grids import GRIDS

    parser.add_argument("--original", required=True, help="the model before unlearning (alias, directory or hub id)")
    parser.add_argument("--unlearned", required=True, help="the unlearned model (directory or hub id)")
    parser.add_argument("--forget", required=True, help="the facts that should be gone (a fact set: JSONL, topic)")
    parser.add_argument("--reference", default=None,
                        help="a model that never learned the facts (TOFU's retain model): residuals against it")
    parser.add_argument("--kept", action="append", default=[], metavar="FACTS",
                        help="a fact set that must be kept (repeatable)")
    parser.add_argument("--text", default=None, help="general text (default: the original model's own samples)")
    parser.add_argument("--nonmembers", default=None,
                        help="sentences of facts of the same kind that no model saw (membership inference)")
    parser.add_argument("--attacks", choices=list(GRIDS), default="default", help="the attack grid (default: default)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the hub")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="the models' weights (attacks train float32 copies)")
    add_options(parser, "seed", "out", "quiet", "json", seed={"default": 0},
                out={"help": "directory for report.md, report.json, attacks.png and the journal (an "
                             "interrupted audit to the same directory continues)"})


def run(args) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    from cir import distributed
    from pathlib import Path

    from cir.auditing import AuditJournal, AuditSettings, audit, check_same_kind, verdict_lines
    from cir.data import load_mcq, load_texts
    from cir.evaluation.membership import load_sentences
    from cir.models import load_model
    from cir.outputs import check_writable, claim_output, to_json

    if distributed.launched():
        raise InputError("cir audit runs in one process")
    settings = AuditSettings(attacks=args.attacks, seed=args.seed)
    forget = load_mcq(args.forget)
    kept = {spec: load_mcq(spec) for spec in args.kept}
    texts = load_texts(args.text) if args.text else None
    nonmembers = load_sentences(args.nonmembers) if args.nonmembers else None
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not (out / AuditJournal.FILENAME).is_file():
        raise InputError("is not empty and holds no audit to continue (give another --out)", path=str(out))
    check_writable(out)
    claim_output(out)
    dtype = getattr(torch, args.dtype)
    hf_logging.disable_progress_bar()  # the audit's own bars say what is happening

    def loaded(spec: str):
        return load_model(spec, dtype=dtype, trust_remote_code=args.trust_remote_code)

    original, tokenizer = loaded(args.original)
    unlearned, unlearned_tokenizer = loaded(args.unlearned)
    check_same_kind(original, unlearned, (tokenizer, unlearned_tokenizer))
    reference = None
    if args.reference:
        reference, reference_tokenizer = loaded(args.reference)
        check_same_kind(original, reference, (tokenizer, reference_tokenizer),
                        names=("the original model", "the reference model"))
    report = audit(original, unlearned, tokenizer, forget, reference=reference, kept=kept, texts=texts,
                   nonmembers=nonmembers, settings=settings, out=args.out, progress=not args.quiet)
    if args.json:
        print(to_json(report["verdict"]))
        return
    print("\n".join(verdict_lines(report["verdict"])))
    print(f"report: {args.out}/report.md (every row), report.json, attacks.png")
