"""Fact sets (multiple-choice questions with fact sentences) and text corpora."""

from cir.data.mcq import MCQ, builtin_topics, load_facts, load_mcq, resolve_mcq_spec, topic_sets
from cir.data.text import load_texts

__all__ = ["MCQ", "builtin_topics", "load_facts", "load_mcq", "resolve_mcq_spec", "load_texts", "topic_sets"]
