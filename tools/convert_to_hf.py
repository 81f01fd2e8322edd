"""Convert a megatron-prealign checkpoint to a Hugging Face Llama directory, or back.

Megatron-Core -> Hugging Face (a checkpoint saved at any TP/PP, stage 1 or stage 2; one process)::

    python tools/convert_to_hf.py --load runs/quickstart/checkpoints --save out/hf

prints what it loaded, the tokenizer check and the logits check (Megatron-Core and Hugging Face
forwards in fp32 on random token batches; exit 2 above ``--tolerance``), e.g.::

    loaded runs/quickstart/checkpoints/iter_0000150 (saved at TP=1/PP=1): 4 layers, hidden 128,
        4 heads / 4 query groups, vocabulary 4001 (padded 4096), untied embeddings
    no tokenizer files written: the run used NullTokenizer (token ids only)
    logits parity on 128 random positions: max |diff| 0.000e+00 (logits up to 13.67), top-1 agreement 1.0000
    wrote out/hf

and for a SentencePiece English-Clone run also
``tokenizer: sentencepiece+english_clone, 400 tokens; AutoTokenizer ids equal ours on 7/7 sample texts``.

The directory then loads offline::

    AutoModelForCausalLM.from_pretrained("out/hf"); AutoTokenizer.from_pretrained("out/hf")

Hugging Face -> Megatron-Core (a model-only checkpoint at iteration 0)::

    python tools/convert_to_hf.py --from-hf path/to/llama --save ckpt/llama_init

prints the flags a run needs, to be used with ``pretrain_prealign.py --pretrained-checkpoint``.

``--save`` is published whole: the output is built under a temporary name beside it and swapped
in only once it is complete and its logits check passed, so a failed conversion writes nothing. A
non-empty ``--save`` is refused before any work unless ``--overwrite`` is given, and then it is
replaced, never mixed with the new files (e.g. an old tokenizer beside a new model).

Exit status: 0 on success, 2 for bad flags, a checkpoint that cannot be converted, or an output
that may not be written (the message says why).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:  # NaN too: no difference would ever exceed it
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (the largest accepted |logit "
                                         f"difference|), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convert_to_hf.py", allow_abbrev=False,
        description="Megatron-Core dist checkpoint (any TP/PP) <-> Hugging Face LlamaForCausalLM.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--load", help="Megatron checkpoint: a --save directory or an iter_XXXXXXX "
                                       "directory, saved at any TP/PP.")
    source.add_argument("--from-hf", help="Hugging Face Llama directory to convert to Megatron.")
    parser.add_argument("--save", required=True,
                        help="Output directory, written whole (refused when not empty, unless "
                             "--overwrite).")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace a non-empty --save directory (all of it) with the new output.")
    parser.add_argument("--tokenizer-model", default=None,
                        help="Use this tokenizer file/directory instead of the checkpoint's stored "
                             "--tokenizer-model (when it moved).")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default=None,
                        help="Weight dtype of the Hugging Face files (default: the run's).")
    parser.add_argument("--no-verify", action="store_true",
                        help="Skip the logits comparison of the two models.")
    parser.add_argument("--tolerance", type=_tolerance, default=1e-4,
                        help="Largest accepted |logit difference| in the check (fp32), >= 0.")
    parser.add_argument("--make-vocab-size-divisible-by", type=int, default=128,
                        help="--from-hf: vocabulary padding rule of the run that will load it.")
    parser.add_argument("--tensor-model-parallel-size", type=int, default=1,
                        help="--from-hf: TP size used in the padding rule (the checkpoint itself "
                             "loads at any TP/PP).")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from megatron_prealign import cpu_compat

    cpu_compat.apply()  # before Megatron-Core is first imported; inert on CUDA machines
    from megatron_prealign.errors import PreAlignError

    try:
        if args.load:
            from megatron_prealign.conversion.convert import convert_megatron_to_hf

            convert_megatron_to_hf(args.load, args.save, overwrite=args.overwrite,
                                   tokenizer_model=args.tokenizer_model, dtype=args.dtype,
                                   verify=not args.no_verify, tolerance=args.tolerance)
        else:
            from megatron_prealign.conversion.convert import convert_hf_to_megatron

            convert_hf_to_megatron(args.from_hf, args.save, overwrite=args.overwrite,
                                   make_vocab_size_divisible_by=args.make_vocab_size_divisible_by,
                                   tensor_model_parallel_size=args.tensor_model_parallel_size,
                                   verify=not args.no_verify, tolerance=args.tolerance)
    except PreAlignError as err:
        print(f"convert_to_hf.py: error: {err}", file=sys.stderr)
        return 2
    finally:
        import torch

        if torch.distributed.is_initialized():
            from megatron_prealign.distributed import destroy

            destroy()
    return 0


if __name__ == "__main__":  # the guard keeps checkpoint writer processes from re-running main
    sys.exit(main())
