"""MMLU's per-subject document filters: ``process_<subject>`` keeps one subject's questions."""

from nexus_pretrain.evaluation.benchmarks import MMLU_SUBJECTS


def _only(subject):
    def process_docs(dataset):
        return dataset.filter(lambda doc: doc["subject"] == subject)

    process_docs.__name__ = f"process_{subject}"
    return process_docs


for _subject in MMLU_SUBJECTS:
    globals()[f"process_{_subject}"] = _only(_subject)
