"""Efficiency factors and fixed overheads of the roofline model, each written once.

Datasheet peaks (FLOPS, bytes/s, link GB/s) are never reached by a serving
engine; these factors say which fraction is. Values are general knowledge of
vLLM/TensorRT-LLM-class engines on Hopper/Ampere GPUs (published GEMM, MFU and
MBU figures), NOT fitted to any validation point (benchmarks/validate_perf.py
reports how far they land). Dimensionless unless the name carries a unit.
"""

# Fraction of dense BF16 peak that weight GEMMs reach inside an engine. cuBLAS
# reaches ~70-75% of H100 peak on large square GEMMs; serving shapes (skinny
# N for TP shards, many launches) bring end-to-end prefill MFU to the 50-60%
# usually reported for vLLM/TRT-LLM.
GEMM_EFFICIENCY = 0.6

# Fraction of dense FP8 peak that FP8 GEMMs reach. FP8 GEMMs get ~1.6x, not 2x,
# the BF16 throughput in practice (per-tensor scaling, epilogues, the same
# memory system), i.e. ~0.5 of the doubled peak.
FP8_GEMM_EFFICIENCY = 0.5

# W4A16 (AWQ/GPTQ Marlin-style) kernels dequantise in the GEMM main loop: free
# while bandwidth-bound (small batches), ~25% slower than BF16 GEMMs once
# compute-bound. Multiplies GEMM_EFFICIENCY for int4.
INT4_DEQUANT_COMPUTE_FACTOR = 0.75

# Fraction of BF16 peak for attention score kernels. FlashAttention-2 forward
# runs at ~35-50% of H100 peak (FlashAttention-3 reaches more, not yet the
# default everywhere); ViT attention via SDPA is in the same range.
ATTENTION_EFFICIENCY = 0.4

# Fraction of datasheet memory bandwidth reached when streaming weights and KV
# cache (model bandwidth utilisation): 70-80% is typical of tuned decode kernels.
MEMORY_EFFICIENCY = 0.75

# Fraction of one-direction link bandwidth an NCCL/custom all-reduce reaches
# (bus bandwidth in nccl-tests is ~80% of link peak for large messages).
INTERCONNECT_EFFICIENCY = 0.8

# Latency per ring hop of an all-reduce: a few microseconds over NVLink
# (NCCL LL protocol / vLLM custom all-reduce), about 10 us through PCIe.
NVLINK_HOP_LATENCY_S = 3e-6
PCIE_HOP_LATENCY_S = 10e-6

# CPU work per engine step not hidden behind the GPU: scheduling, input
# preparation, sampling, output processing. vLLM's v0.5.3 profile (FACTS.md
# 5d) showed it dominating small models; v0.6+ cut it to the 1-2 ms range.
# The part that grows with the sequences in the step is the engine's, added by
# the batcher: sim/policies.py ENGINE_HOST_S_PER_SEQUENCE.
STEP_OVERHEAD_S = 1.5e-3

# Per-request work of the serving front end, outside the engine step: HTTP and
# chat-template handling, input processing dispatch, IPC to the engine core,
# detokenising and streaming the first token. vLLM's v0.5.3 profile (FACTS.md
# 5d) put the API server at a third of execution time; with the v0.6 split
# into processes a few ms per request remain (short-prompt TTFT of small
# models at low load is ~10 ms where the prefill computes in a few ms).
REQUEST_OVERHEAD_S = 5e-3

# Small kernels per transformer layer (2 norms, rotary/KV write, attention,
# activation, residual adds, 4 GEMMs) and the floor each costs even in a CUDA
# graph (launch-to-tail ~2 us on Hopper). Dominates only tiny models.
KERNELS_PER_LAYER = 10
KERNEL_LATENCY_S = 2e-6

# Hidden-width activation tensors read or written per token per layer outside
# the GEMMs' weight reads (norm in/out, residual, rotary, attention in/out,
# MLP activation): bandwidth-side cost of activations.
ACTIVATION_TENSORS_PER_LAYER = 12
ACTIVATION_BYTES = 2  # activations are BF16 whatever the weight precision
