"""Both conversions end to end, and the logits check that proves them.

``convert_megatron_to_hf``: dist checkpoint (any TP/PP, stage 1 or 2) -> ``LlamaForCausalLM``
directory.
``convert_hf_to_megatron``: ``LlamaForCausalLM`` directory -> model-only dist checkpoint (iteration 0)
that a run starts from with ``--pretrained-checkpoint DIR`` at any TP/PP.

``compare_logits`` runs the Megatron-Core model (one process, fp32) and the Hugging Face model on
the same random token batches and reports the largest absolute logit difference over the real
vocabulary and the share of positions whose argmax agrees. When the export is written in bf16/fp16
the Megatron weights are rounded to that dtype first, so the check measures the conversion, not the
rounding.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, Optional

import torch

from megatron_prealign.arguments import padded_vocab_size, parse_args
from megatron_prealign.checkpointing.offline import (
    find_iteration,
    load_megatron_checkpoint,
    save_megatron_checkpoint,
    single_process_args,
)
from megatron_prealign.checkpointing.store import read_meta
from megatron_prealign.conversion import hf as hf_io
from megatron_prealign.conversion import mapping
from megatron_prealign.conversion.mapping import ConversionError
from megatron_prealign.conversion.tokenizer import BASE_TOKENIZER_DIR, check_tokenizer_parity, write_hf_tokenizer
from megatron_prealign.files import publish_dir
from megatron_prealign.text.tokenizers import build_tokenizer
from megatron_prealign.text.tokenizers.english_clone import CLONE_TAG

Log = Callable[[str], None]


def _random_batches(vocab_size: int, num_batches: int, batch_size: int, seq_length: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab_size, (batch_size, seq_length), generator=generator)
            for _ in range(num_batches)]


@torch.no_grad()
def megatron_logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``[b, s] -> [b, s, V_padded]`` logits of a TP=1/PP=1 Megatron-Core ``GPTModel``."""
    tokens = tokens.to(next(model.parameters()).device)
    positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0).expand_as(tokens)
    return model(tokens, positions, None).float().cpu()  # batch-first [b, s, V] without labels


@torch.no_grad()
def compare_logits(megatron_model: torch.nn.Module, hf_model: torch.nn.Module, vocab_size: int, *,
                   num_batches: int = 2, batch_size: int = 2, seq_length: int = 32,
                   seed: int = 0) -> Dict[str, float]:
    """Max |logit difference| and argmax agreement of the two models on random token batches.

    Returns:
        ``{"max_abs_diff", "top1_agreement", "positions", "max_abs_logit"}`` over the real
        vocabulary (Megatron's padding columns are left out).
    """
    diffs, agree, positions, scale = [], 0, 0, 0.0
    for tokens in _random_batches(vocab_size, num_batches, batch_size, seq_length, seed):
        ours = megatron_logits(megatron_model, tokens)[..., :vocab_size]  # [b, s, V]
        theirs = hf_model(input_ids=tokens).logits.float()  # [b, s, V]
        if theirs.shape != ours.shape:
            raise ConversionError(f"logit shapes differ: Megatron {tuple(ours.shape)}, Hugging Face "
                                  f"{tuple(theirs.shape)}")
        diffs.append((ours - theirs).abs().max())
        scale = max(scale, float(ours.abs().max()))
        agree += int((ours.argmax(-1) == theirs.argmax(-1)).sum())
        positions += tokens.numel()
    worst = float(torch.stack(diffs).max())  # a NaN anywhere stays NaN (Python's max drops it)
    return {"max_abs_diff": worst, "top1_agreement": agree / positions, "positions": positions,
            "max_abs_logit": scale}


def _namespace(stored: dict):
    from argparse import Namespace

    return Namespace(**stored)


def _special_ids(out_dir: str, tokenizer) -> Dict[str, Optional[int]]:
    if tokenizer is None:
        return {}
    if getattr(tokenizer, "tokenizer_type", None) == "NullTokenizer" or not os.path.isfile(
            os.path.join(out_dir, "tokenizer.json")):
        return {"eos": int(tokenizer.eod)}
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(out_dir, local_files_only=True)
    return {"bos": hf_tok.bos_token_id, "eos": hf_tok.eos_token_id, "pad": hf_tok.pad_token_id}


def check_inputs_outside(save: str, inputs: Dict[str, Optional[str]]) -> None:
    """Refuse an output directory that is, or holds, one of the inputs: it is replaced whole.

    Args:
        save: the ``--save`` directory.
        inputs: flag -> path of everything the conversion reads (None: not given).
    """
    target = os.path.realpath(save)
    for flag, path in inputs.items():
        if path and os.path.commonpath([os.path.realpath(path), target]) == target:
            raise ConversionError(f"--save {save} would replace {flag} {path}: the output directory "
                                  "is replaced whole; choose another --save")


def _parity_failed(parity: Dict[str, float], tolerance: float) -> bool:
    return not parity["max_abs_diff"] <= tolerance  # a NaN difference fails too


def _export_hf(loaded, stored: dict, out_dir: str, out_dtype: torch.dtype, log: Log) -> dict:
    """Write the tokenizer and model files of ``loaded`` into ``out_dir``; the conversion record."""
    shape = mapping.llama_shape(loaded.args, loaded.vocab_size)
    weights = mapping.megatron_to_hf(loaded.state_dict(), shape)
    tok_info = {"kind": "none"}
    if loaded.tokenizer is not None:
        tok_info = write_hf_tokenizer(loaded.tokenizer, out_dir,
                                      model_max_length=shape.max_position_embeddings)
    if tok_info["kind"] == "none":
        log("no tokenizer files written: the run used NullTokenizer (token ids only)")
    hf_io.write_hf_model(weights, shape, out_dir, out_dtype, _special_ids(out_dir, loaded.tokenizer))
    record = {
        "format": hf_io.CONVERSION_FORMAT,
        "source": os.path.abspath(loaded.path),
        "iteration": loaded.meta.get("iteration"),
        "stage": stored.get("stage", "pretrain"),
        "saved_parallel_layout": loaded.meta.get("parallel_layout"),
        "dtype": str(out_dtype).replace("torch.", ""),
        "vocab_size": shape.vocab_size,
        "padded_vocab_size": shape.padded_vocab_size,
        "english_clone": bool(stored.get("english_clone")),
        "base_vocab_size": getattr(loaded.tokenizer, "base_vocab_size", shape.vocab_size),
        "clone_tag": CLONE_TAG if stored.get("english_clone") else None,
        "tokenizer": {**tok_info, "tokenizer_type": stored.get("tokenizer_type")},
    }
    if tok_info["kind"] != "none":
        record["tokenizer_parity"] = check_tokenizer_parity(loaded.tokenizer, out_dir)
        bad = record["tokenizer_parity"]["mismatches"]
        log(f"tokenizer: {tok_info['kind']}, {tok_info['vocab_size']} tokens; AutoTokenizer ids "
            f"equal ours on {record['tokenizer_parity']['texts'] - len(bad)}/"
            f"{record['tokenizer_parity']['texts']} sample texts")
    return record


def _verify_hf(loaded, out_dir: str, out_dtype: torch.dtype, tolerance: float, log: Log) -> dict:
    """``compare_logits`` of the loaded checkpoint and the Hugging Face files in ``out_dir``."""
    shape = mapping.llama_shape(loaded.args, loaded.vocab_size)
    if out_dtype != torch.float32:  # compare the layout, not the rounding
        for p in loaded.model.parameters():
            p.data = p.data.to(out_dtype).float()
    parity = compare_logits(loaded.model, hf_io.load_hf_model(out_dir), shape.vocab_size,
                            seq_length=min(32, shape.max_position_embeddings))
    log(f"logits parity on {parity['positions']} random positions: max |diff| "
        f"{parity['max_abs_diff']:.3e} (logits up to {parity['max_abs_logit']:.2f}), "
        f"top-1 agreement {parity['top1_agreement']:.4f}")
    return {**parity, "tolerance": tolerance}


def _describe_loaded(loaded) -> str:
    """One line for the log: which checkpoint was loaded, its saved layout and its model shape."""
    layout, shape = loaded.meta["parallel_layout"], mapping.llama_shape(loaded.args, loaded.vocab_size)
    return (f"loaded {loaded.path} (saved at TP={layout['tensor_model_parallel_size']}"
            f"/PP={layout['pipeline_model_parallel_size']}): "
            f"{shape.num_layers} layers, hidden {shape.hidden_size}, {shape.num_attention_heads} heads / "
            f"{shape.num_query_groups} query groups, vocabulary {shape.vocab_size} (padded "
            f"{shape.padded_vocab_size}), {'tied' if shape.tied_embeddings else 'untied'} embeddings")


def convert_megatron_to_hf(load: str, save: str, *, overwrite: bool = False,
                           tokenizer_model: Optional[str] = None, dtype: Optional[str] = None,
                           verify: bool = True, tolerance: float = 1e-4, log: Log = print) -> dict:
    """Convert a megatron-prealign checkpoint to a Hugging Face ``LlamaForCausalLM`` directory.

    The directory is built under a temporary name beside ``save`` and swapped in only once it is
    complete and (with ``verify``) its logits match: a conversion that fails, or fails its check,
    publishes nothing and leaves an existing ``save`` as it was.

    Args:
        load: the ``--save`` directory (newest iteration) or one ``iter_XXXXXXX`` directory.
        save: the output directory; replaced whole.
        overwrite: replace a non-empty ``save`` (refused otherwise, before any work).
        tokenizer_model: overrides the stored ``--tokenizer-model`` path.
        dtype: ``fp32``, ``bf16`` or ``fp16``; default: the run's parameter dtype.
        verify: run ``compare_logits`` on the written files and fail above ``tolerance``.
        tolerance: largest accepted |logit difference| (fp32 arithmetic on both sides).

    Returns:
        The conversion record also written to ``save/prealign_conversion.json``.

    Raises:
        ConversionError: architecture not representable, tokenizer missing, or parity failure.
        CheckpointError: not a complete checkpoint (an interrupted ``.incomplete`` save included).
        OutputError: ``save`` is not empty and ``overwrite`` is not set, or cannot be written.
    """
    iteration_dir = find_iteration(load)
    stored = read_meta(iteration_dir)["args"]
    hf_io.check_llama_representable(_namespace(stored))  # before any weight is read
    check_inputs_outside(save, {"--load": iteration_dir,
                                "--tokenizer-model": tokenizer_model or stored.get("tokenizer_model")})
    out_dtype = hf_io.DTYPES[dtype] if dtype else (
        torch.bfloat16 if stored.get("bf16") else torch.float16 if stored.get("fp16") else torch.float32)
    with publish_dir(save, overwrite=overwrite, flag="--overwrite") as work:
        loaded = load_megatron_checkpoint(iteration_dir, tokenizer_model)
        log(_describe_loaded(loaded))
        record = _export_hf(loaded, stored, work, out_dtype, log)
        if verify:
            record["parity"] = _verify_hf(loaded, work, out_dtype, tolerance, log)
            if _parity_failed(record["parity"], tolerance):
                raise ConversionError(
                    f"logits differ by {record['parity']['max_abs_diff']:.3e} > {tolerance:g} "
                    "between Megatron-Core and the converted model; the conversion is wrong for "
                    f"this architecture (please report it). Nothing was written to {save}")
        with open(os.path.join(work, hf_io.CONVERSION_META), "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
    log(f"wrote {save}")
    return record


def _hf_tokenizer_flags(hf_dir: str, meta: Optional[dict]):
    """(tokenizer type, tokenizer model, english_clone, vocab size) for an imported directory."""
    if meta and meta.get("tokenizer", {}).get("kind", "").startswith("sentencepiece"):
        model = os.path.abspath(os.path.join(hf_dir, "tokenizer.model"))
        clone = bool(meta.get("english_clone"))
        tok = build_tokenizer("SentencePieceTokenizer", model, english_clone=clone)
        return "SentencePieceTokenizer", model, clone, tok.vocab_size
    if meta and meta.get("tokenizer", {}).get("kind") == "huggingface+english_clone":
        base = os.path.abspath(os.path.join(hf_dir, BASE_TOKENIZER_DIR))
        tok = build_tokenizer("HuggingFaceTokenizer", base, english_clone=True)
        return "HuggingFaceTokenizer", base, True, tok.vocab_size
    if os.path.isfile(os.path.join(hf_dir, "tokenizer.json")):
        tok = build_tokenizer("HuggingFaceTokenizer", os.path.abspath(hf_dir))
        return "HuggingFaceTokenizer", os.path.abspath(hf_dir), False, tok.vocab_size
    return "NullTokenizer", None, False, None


def convert_hf_to_megatron(hf_dir: str, save: str, *, overwrite: bool = False,
                           make_vocab_size_divisible_by: int = 128,
                           tensor_model_parallel_size: int = 1, seq_length: Optional[int] = None,
                           verify: bool = True, tolerance: float = 1e-4, log: Log = print) -> dict:
    """Convert a local ``LlamaForCausalLM`` directory to a model-only Megatron dist checkpoint.

    The vocabulary is padded like a run with ``--make-vocab-size-divisible-by`` and
    ``--tensor-model-parallel-size`` would pad it (Megatron-LM's rule), with zero rows. As for the
    other direction, the checkpoint directory is published whole, only once it passed its check.

    Args:
        hf_dir: the Hugging Face directory (config.json, *.safetensors, tokenizer files if any).
        save: the checkpoint directory to create (Megatron-LM layout, iteration 0).
        overwrite: replace a non-empty ``save`` (refused otherwise, before any work).
        make_vocab_size_divisible_by, tensor_model_parallel_size: the padding rule of the run
            that will load the checkpoint.
        seq_length: ``--seq-length`` recorded in the run flags (default: min(max positions, 4096)).
        verify: reload the written checkpoint and compare its logits with the Hugging Face model.

    Returns:
        A record with the flags a run needs to load the checkpoint, and the parity result.
    """
    check_inputs_outside(save, {"--from-hf": hf_dir})
    shape, hf_vocab, real_vocab, run_flags = _hf_import_plan(hf_dir, make_vocab_size_divisible_by,
                                                 tensor_model_parallel_size, seq_length)
    with publish_dir(save, overwrite=overwrite, flag="--overwrite") as work:
        weights = mapping.hf_to_megatron(hf_io.read_hf_weights(hf_dir), shape)
        args = _imported_checkpoint_args(run_flags, shape.padded_vocab_size)
        root = save_megatron_checkpoint(weights, args, work, iteration=0,
                                        extra_meta={"converted_from": os.path.abspath(hf_dir)})
        root = os.path.join(os.path.abspath(save), os.path.basename(root))  # once published
        record = {"checkpoint": root, "run_flags": run_flags,
                  "padded_vocab_size": shape.padded_vocab_size}
        if verify:
            parity = _verify_import(work, hf_dir, hf_vocab, shape.max_position_embeddings, log)
            record["parity"] = {**parity, "tolerance": tolerance}
            if _parity_failed(parity, tolerance):
                raise ConversionError(f"logits differ by {parity['max_abs_diff']:.3e} > {tolerance:g} "
                                      f"between {hf_dir} and the converted checkpoint. Nothing was "
                                      f"written to {save}")
    log(f"wrote {root}: {shape.num_layers} layers, vocabulary {real_vocab} padded to "
        f"{shape.padded_vocab_size}")
    log("start a run from it with: --pretrained-checkpoint " + save + " " + " ".join(run_flags))
    return record


def _verify_import(checkpoint_dir: str, hf_dir: str, hf_vocab: int, max_positions: int, log: Log) -> dict:
    """``compare_logits`` of the checkpoint just written in ``checkpoint_dir`` and the Hugging Face
    model it was made from."""
    loaded = load_megatron_checkpoint(checkpoint_dir)
    parity = compare_logits(loaded.model, hf_io.load_hf_model(hf_dir), hf_vocab,
                            seq_length=min(32, max_positions))
    log(f"logits parity on {parity['positions']} random positions: max |diff| "
        f"{parity['max_abs_diff']:.3e}, top-1 agreement {parity['top1_agreement']:.4f}")
    return parity


def _imported_checkpoint_args(run_flags, padded_vocab_size: int):
    """The flags an imported checkpoint declares: those a run loading it passes (validated like
    that run's), the padded vocabulary of its embedding, and the one-process layout it is saved at.

    ``--mock-data`` only stands in for the data flags during validation; the record says no data.
    """
    validated = parse_args(run_flags + ["--mock-data"], world_size=1)
    return single_process_args(vars(validated), mock_data=False, padded_vocab_size=padded_vocab_size)


def _hf_import_plan(hf_dir: str, make_vocab_size_divisible_by: int, tensor_model_parallel_size: int,
                    seq_length: Optional[int]):
    """(shape, embedding rows, tokenizer vocabulary, run flags) of an import, from its config and
    tokenizer (no weight is read)."""
    if not os.path.isfile(os.path.join(hf_dir, "config.json")):
        raise ConversionError(f"--from-hf {hf_dir}: no config.json there (not a Hugging Face model "
                              "directory)")
    meta = hf_io.read_conversion_meta(hf_dir)
    tok_type, tok_model, clone, tok_vocab = _hf_tokenizer_flags(hf_dir, meta)
    with open(os.path.join(hf_dir, "config.json")) as f:
        hf_vocab = int(json.load(f)["vocab_size"])
    real_vocab = tok_vocab if tok_vocab is not None else hf_vocab
    padded = padded_vocab_size(real_vocab, make_vocab_size_divisible_by, tensor_model_parallel_size)
    if hf_vocab > padded:
        raise ConversionError(f"{hf_dir}: the embedding has {hf_vocab} rows but the tokenizer only "
                              f"{real_vocab} ids, padded to {padded}; raise "
                              "--make-vocab-size-divisible-by")
    shape, _ = hf_io.shape_from_hf_config(hf_dir, hf_vocab, padded)
    flags = ["--num-layers", shape.num_layers, "--hidden-size", shape.hidden_size,
             "--ffn-hidden-size", shape.ffn_hidden_size,
             "--num-attention-heads", shape.num_attention_heads, "--kv-channels", shape.head_dim,
             "--max-position-embeddings", shape.max_position_embeddings,
             "--seq-length", seq_length or min(shape.max_position_embeddings, 4096),
             "--norm-epsilon", shape.norm_epsilon, "--rotary-base", int(shape.rotary_base),
             "--swiglu", "--normalization", "RMSNorm", "--disable-bias-linear",
             "--make-vocab-size-divisible-by", make_vocab_size_divisible_by,
             "--untie-embeddings-and-output-weights" if not shape.tied_embeddings
             else "--no-untie-embeddings-and-output-weights"]
    if shape.num_query_groups != shape.num_attention_heads:
        flags += ["--group-query-attention", "--num-query-groups", shape.num_query_groups]
    if tok_type == "NullTokenizer":
        flags += ["--tokenizer-type", "NullTokenizer", "--vocab-size", hf_vocab - 1]
    else:
        flags += ["--tokenizer-type", tok_type, "--tokenizer-model", tok_model]
    if clone:
        flags += ["--english-clone"]
    return shape, hf_vocab, real_vocab, [str(x) for x in flags]
