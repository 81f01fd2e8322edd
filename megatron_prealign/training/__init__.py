"""The Megatron-Core training runtime: initialize, data, step, loop, checkpoints, exit, logging."""
