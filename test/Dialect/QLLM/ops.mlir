// RUN: qopt-opt %s | qopt-opt | FileCheck %s
// RUN: qopt-opt %s --mlir-print-op-generic | qopt-opt | FileCheck %s
// Round trip of every QLLM op, attribute and type.

// CHECK-LABEL: func.func @decoder
func.func @decoder(%ids: tensor<?x?xi64>, %kv: tensor<?x?x16xf32>) -> tensor<?x?x64xf32> {
  // CHECK: %[[E:.+]] = qllm.param "model.embed_tokens.weight" : tensor<64x32xbf16>
  %e = qllm.param "model.embed_tokens.weight" : tensor<64x32xbf16>
  // CHECK: %[[N:.+]] = qllm.param "norm" : tensor<32xf32>
  %n = qllm.param "norm" : tensor<32xf32>
  // CHECK: %[[W:.+]] = qllm.param "w" : tensor<32x32xf16>
  %w = qllm.param "w" : tensor<32x32xf16>
  // CHECK: %[[X:.+]] = qllm.embedding %{{.+}}, %[[E]] : (tensor<?x?xi64>, tensor<64x32xbf16>) -> tensor<?x?x32xf32>
  %x = qllm.embedding %ids, %e : (tensor<?x?xi64>, tensor<64x32xbf16>) -> tensor<?x?x32xf32>
  // CHECK: %[[Y:.+]] = qllm.rms_norm %[[X]], %[[N]] {epsilon = 1.000000e-05 : f64} : tensor<?x?x32xf32>, tensor<32xf32>
  %y = qllm.rms_norm %x, %n {epsilon = 1.0e-5 : f64} : tensor<?x?x32xf32>, tensor<32xf32>
  // CHECK: %[[Z:.+]] = qllm.linear %[[Y]], %[[W]] : tensor<?x?x32xf32>, tensor<32x32xf16> -> tensor<?x?x32xf32>
  %z = qllm.linear %y, %w : tensor<?x?x32xf32>, tensor<32x32xf16> -> tensor<?x?x32xf32>
  // CHECK: %[[R:.+]] = qllm.rotary %[[Z]] {head_dim = 16 : i64, num_heads = 2 : i64, theta = 1.000000e+04 : f64} : tensor<?x?x32xf32>
  %r = qllm.rotary %z {num_heads = 2 : i64, head_dim = 16 : i64, theta = 10000.0 : f64} : tensor<?x?x32xf32>
  // CHECK: qllm.rotary %[[Z]] {head_dim = 16 : i64, num_heads = 2 : i64, rotary_dim = 8 : i64, scaling = {factor = 3.200000e+01 : f64, high_freq_factor = 4.000000e+00 : f64, low_freq_factor = 1.000000e+00 : f64, original_max_position_embeddings = 8192 : i64, rope_type = "llama3"}, theta = 5.000000e+05 : f64}
  %r2 = qllm.rotary %z {num_heads = 2 : i64, head_dim = 16 : i64, rotary_dim = 8 : i64, theta = 500000.0 : f64, scaling = {rope_type = "llama3", factor = 32.0 : f64, low_freq_factor = 1.0 : f64, high_freq_factor = 4.0 : f64, original_max_position_embeddings = 8192 : i64}} : tensor<?x?x32xf32>
  // CHECK: %[[A:.+]] = qllm.attention %[[R]], %[[KV:.+]], %[[KV]] {head_dim = 16 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, scale = 2.500000e-01 : f64} : tensor<?x?x32xf32>, tensor<?x?x16xf32>, tensor<?x?x16xf32> -> tensor<?x?x32xf32>
  %a = qllm.attention %r, %kv, %kv {num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : tensor<?x?x32xf32>, tensor<?x?x16xf32>, tensor<?x?x16xf32> -> tensor<?x?x32xf32>
  // CHECK: %[[S:.+]] = qllm.swiglu %[[A]], %[[Z]] : tensor<?x?x32xf32>
  %s = qllm.swiglu %a, %z : tensor<?x?x32xf32>
  // CHECK: %[[H:.+]] = qllm.add %[[S]], %[[X]] : tensor<?x?x32xf32>
  %h = qllm.add %s, %x : tensor<?x?x32xf32>
  // CHECK: qllm.lm_head %[[H]], %[[E]] : tensor<?x?x32xf32>, tensor<64x32xbf16> -> tensor<?x?x64xf32>
  %l = qllm.lm_head %h, %e : tensor<?x?x32xf32>, tensor<64x32xbf16> -> tensor<?x?x64xf32>
  return %l : tensor<?x?x64xf32>
}

// CHECK-LABEL: func.func @quantized
func.func @quantized(%x: tensor<1x7x256xf32>, %bias: tensor<128xf32>) -> tensor<1x7x128xf32> {
  // CHECK: qllm.qparam "q4" : <[128, 256], <kind = int, bits = 4, group_size = 128, symmetric = false, scale_type = f16, zero_type = i8, layout = "rowmajor_u4">>
  %w = qllm.qparam "q4" : !qllm.qweight<[128, 256], #qllm.quant<kind = int, bits = 4, group_size = 128, symmetric = false, scale_type = f16, zero_type = i8, layout = "rowmajor_u4">>
  // CHECK: qllm.qparam "nf4" : <[128, 256], <kind = nf4, bits = 4, group_size = 64, symmetric = true, scale_type = f32, layout = "nf4_block">>
  %n = qllm.qparam "nf4" : !qllm.qweight<[128, 256], #qllm.quant<kind = nf4, bits = 4, group_size = 64, symmetric = true, scale_type = f32, layout = "nf4_block">>
  // CHECK: qllm.qparam "fp8" : <[128, 256], <kind = fp8_e4m3, bits = 8, group_size = -1, symmetric = true, scale_type = f32, layout = "rowmajor_e4m3">>
  %f = qllm.qparam "fp8" : !qllm.qweight<[128, 256], #qllm.quant<kind = fp8_e4m3, bits = 8, group_size = -1, symmetric = true, scale_type = f32, layout = "rowmajor_e4m3">>
  // CHECK: qllm.linear %{{.+}}, %{{.+}}, %{{.+}} : tensor<128xf32> : tensor<1x7x256xf32>, !qllm.qweight<[128, 256]
  %y = qllm.linear %x, %w, %bias : tensor<128xf32> : tensor<1x7x256xf32>, !qllm.qweight<[128, 256], #qllm.quant<kind = int, bits = 4, group_size = 128, symmetric = false, scale_type = f16, zero_type = i8, layout = "rowmajor_u4">> -> tensor<1x7x128xf32>
  return %y : tensor<1x7x128xf32>
}
