"""Results documents with given numbers (the shape nexus-eval writes)."""

from nexus_pretrain.evaluation.results import SCHEMA

COLUMNS = ["MMLU", "GPQA", "GPQA-D", "BBH", "GSM8k", "MATH", "HumanEval", "MBPP"]


def make_result(optimizer, pretrain, ood, acc, loss, model="llama_520m", seed=0, step=1000, run_dir=None, tag=None,
                schedule="wsd", data="math10"):
    acc = dict(zip(COLUMNS, acc))
    loss = dict(zip(COLUMNS, loss))
    acc["All"] = sum(acc.values()) / len(COLUMNS)
    loss["All"] = sum(loss.values()) / len(COLUMNS)
    return {
        "schema": SCHEMA, "optimizer": optimizer, "model": model, "step": step, "tokens": step * 1000, "tag": tag,
        "run_dir": run_dir, "run_name": f"{optimizer}_{seed}",
        "config": {"schedule": {"name": schedule}, "trainer": {"seed": seed}, "data": {"name": data}},
        "data_mixture": {"name": data},
        "metrics": {"pretrain": pretrain, "ood": ood, "accuracy": acc, "loss": loss},
    }


# Paper Table 1, 1B block.
ADAMW_1B = make_result("adamw", 1.826, 1.433, [32.1, 25.0, 21.8, 29.6, 18.0, 13.0, 19.0, 17.0],
                       [2.363, 2.221, 2.124, 1.640, 1.429, 1.204, 1.270, 2.035])
NEXUS_1B = make_result("nexus(adamw)", 1.826, 1.428, [33.5, 30.4, 21.8, 29.3, 20.0, 13.0, 19.0, 22.0],
                       [2.316, 2.201, 2.102, 1.638, 1.396, 1.176, 1.261, 1.977])
