"""``pretrain_prealign.py`` (stage 1 or 2), then the Megatron-Core logits of a fixed random batch
computed at the run's own TP/PP layout, saved to ``$PREALIGN_DUMP_LOGITS``.

The reference for the conversion parity tests: the logits come from the model as it was trained
and saved (tensor slices, pipeline stages passing activations), not from a resharded reload.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

BATCH, SEQ = 2, 16


@torch.no_grad()
def dump_logits(state) -> None:
    from megatron.core import parallel_state as ps

    from megatron_prealign.checkpointing.store import unwrap

    model = unwrap(state.model[0])
    model.eval()
    vocab = state.tokenizer.vocab_size
    tokens = torch.randint(0, vocab, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    positions = torch.arange(SEQ).unsqueeze(0).expand(BATCH, SEQ)
    if not ps.is_pipeline_first_stage():
        hidden = torch.empty(SEQ, BATCH, state.args.hidden_size)  # [s, b, h] from the previous stage
        torch.distributed.recv(hidden, src=ps.get_pipeline_model_parallel_prev_rank())
        model.set_input_tensor(hidden)
    out = model(tokens, positions, None)  # [s, b, h] mid-pipeline; [b, s, V/tp] on the last stage
    if not ps.is_pipeline_last_stage():
        torch.distributed.send(out.contiguous(), dst=ps.get_pipeline_model_parallel_next_rank())
        return
    parts = [torch.empty_like(out) for _ in range(ps.get_tensor_model_parallel_world_size())]
    torch.distributed.all_gather(parts, out.contiguous(), group=ps.get_tensor_model_parallel_group())
    if ps.get_tensor_model_parallel_rank() == 0 and ps.get_data_parallel_rank() == 0:
        torch.save({"tokens": tokens, "logits": torch.cat(parts, dim=-1), "vocab_size": vocab},
                   os.environ["PREALIGN_DUMP_LOGITS"])


def main() -> int:
    import pretrain_prealign
    from megatron_prealign.training import align, loop, pretrain

    original = loop.train

    def train_then_dump(state, *args, **kwargs):
        result = original(state, *args, **kwargs)
        dump_logits(state)
        return result

    # Every module that binds ``train`` by name: stage 2 (pretrain) and stage 1 (align).
    loop.train = pretrain.train = align.train = train_then_dump
    return pretrain_prealign.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
