"""What a run costs and how it computes, measured the same way for every method.

flops (with flops_tuners for peft's tuners) counts training and inference FLOPs from the model's
structure and the padded batches; cost holds parameter counts, adapter bytes, peak memory and wall
time; inference_cost times prefill and decode alone; forgetting measures the LM loss on held-out
texts before and after training; precision decides the dtypes a run holds and computes in (one
numerics for all methods, bf16 where the CPU or GPU has it).
"""
