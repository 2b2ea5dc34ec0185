# Paged attention and the rotary + KV-cache write (included by
# runtime/cuda/CMakeLists.txt, paths relative to runtime/cuda).
list(APPEND QOPT_CUDA_SOURCES
  src/attention/DecodeAttention.cu
  src/attention/PrefillAttention.cu
  src/attention/PrefillAttentionMma.cu
  src/attention/RotaryKVWrite.cu
)
