"""Results JSON, Markdown tables and the alignment PNG."""

import json

import numpy as np
import pytest

from megatron_prealign.evaluation.report import (
    SCHEMA,
    make_report,
    markdown_report,
    markdown_table,
    write_report,
)

LEVELS = ["embedding", "layer1", "layer2", "final_norm", "output_embedding"]


def run(name, p_at_1, with_knowledge=True):
    levels = {lvl: {"aligned_cosine": 0.5 + p / 2, "random_cosine": 0.1, "p_at_1": p,
                    "num_aligned_pairs": 10, "num_queries": 10} for lvl, p in zip(LEVELS, p_at_1)}
    entry = {"name": name, "model": {"path": f"/ckpt/{name}", "kind": "megatron", "iteration": 10},
             "perplexity": {"en": {"nll": 2.0, "perplexity": 7.389, "tokens": 100, "sequences": 3}},
             "alignment": {"heldout": {"dictionary": "d.jsonl", "entries": 10, "words": 20,
                                       "levels": levels}}}
    if with_knowledge:
        entry["knowledge"] = {"transfer": {"accuracy": 0.5, "items": 4, "chance": 0.25}}
        entry["knowledge_generation"] = {"transfer": {"accuracy": 0.25, "items": 4, "chance": 0.0}}
        entry["transfer"] = {task: {"source_accuracy": acc, "target_accuracy": acc / 2, "train_accuracy": 1.0,
                                    "chance": 0.5, "level": "final_norm"}
                             for task, acc in (("topics", 0.8), ("books", 0.6))}
        entry["transfer"]["books"]["levels"] = {"final_norm": {}, "layer1": {"source_accuracy": 0.7,
                                                                             "target_accuracy": 0.65}}
        entry["transfer"]["books"]["finetuned"] = {"source_accuracy": 0.9, "target_accuracy": 0.2, "steps": 50}
    return entry


def test_json_schema_and_markdown_rows():
    report = make_report([run("prealign", [1, 0.9, 0.8, 0.8, float("nan")]),
                          run("joint", [0.1, 0.2, 0.3, 0.3, 0.1], with_knowledge=False)])
    assert report["schema"] == SCHEMA
    assert report["runs"][0]["alignment"]["heldout"]["levels"]["output_embedding"]["p_at_1"] is None
    json.dumps(report, allow_nan=False)  # strict JSON: NaN became null
    md = markdown_report(report)
    assert "| run | en |" in md and "| prealign | 7.39 |" in md
    assert "| run | embedding | layer1 | layer2 | final_norm | output_embedding |" in md
    assert "| prealign | 1.000 | 0.900 | 0.800 | 0.800 | n/a |" in md
    assert "| joint | 0.450 | 0.500 | 0.550 | 0.550 | 0.450 |" in md  # cosine gap: 0.5 + p/2 - 0.1
    assert "| prealign | 0.500 (0.250, n=4) |" in md and "| joint |  |" in md
    assert "| run | transfer |" in md and "| prealign | 0.250 (n=4) |" in md
    # One transfer row per run and task; a run without a task has an empty row.
    assert "| prealign | topics | 0.800 | 0.400 | 1.000 | 0.500 | final_norm |" in md
    assert "| prealign | books | 0.600 | 0.300 | 1.000 | 0.500 | final_norm |" in md
    assert "| joint | books |  |  |  |  |  |" in md
    assert "| prealign | books | 0.700 | 0.650 | n/a | 0.500 | layer1 |" in md
    assert "| prealign | books | 0.900 | 0.200 | n/a | 0.500 | fine-tuned (50 steps) |" in md
    with pytest.raises(ValueError, match="unique"):
        make_report([run("a", [0] * 5), run("a", [0] * 5)])


def colour_pixels(image, rgb):
    target = np.array(rgb) / 255.0
    return int((np.abs(image[..., :3] - target).max(axis=-1) < 0.06).sum())


def test_png_is_a_readable_plot_with_one_line_per_run(tmp_path):
    import matplotlib.image

    one = write_report(make_report([run("prealign", [1, 0.9, 0.8, 0.8, 0.7])]), str(tmp_path / "one"))
    two = write_report(make_report([run("prealign", [1, 0.9, 0.8, 0.8, 0.7]),
                                    run("joint", [0.1, 0.2, 0.3, 0.3, 0.1])]), str(tmp_path / "two"))
    assert json.loads(open(two["json"]).read())["runs"][1]["name"] == "joint"
    assert open(two["markdown"]).read().startswith("# Evaluation results")
    image = matplotlib.image.imread(two["plots"][0])  # decodes as a PNG
    height, width = image.shape[:2]
    assert width >= 800 and height >= 400
    assert image[..., :3].std() > 0.05  # not blank
    blue, orange = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)  # matplotlib's first two line colours
    single = matplotlib.image.imread(one["plots"][0])
    assert colour_pixels(image, blue) > 200 and colour_pixels(image, orange) > 200
    assert colour_pixels(single, blue) > 200 and colour_pixels(single, orange) == 0


def test_markdown_table_plain_and_aligned():
    assert markdown_table(["metric", "a", "b"], [["ppl", "12.5", "n/a"], ["acc", "0.500", "1.000"]]) == [
        "| metric | a | b |", "|---|---|---|", "| ppl | 12.5 | n/a |", "| acc | 0.500 | 1.000 |"]
    assert markdown_table(["metric", "joint"], [["clone PPL", "7.1"], ["P@1", "0.250"]], aligned=True) == [
        "| metric    | joint |",
        "|-----------|-------|",
        "| clone PPL |   7.1 |",
        "| P@1       | 0.250 |"]
