// RUN: qopt-opt %s | qopt-opt | FileCheck %s
// Activation (W8A8) and KV-cache quantization attributes round-trip.

// CHECK-LABEL: func.func @w8a8
func.func @w8a8(%x: tensor<?x?x32xf32>, %w: tensor<16x32xf32>) -> (tensor<?x?x16xf32>, tensor<?x?x16xf32>, tensor<?x?x16xf32>) {
  // CHECK: qllm.linear %{{.+}}, %{{.+}} {act_quant = "per_token"}
  %a = qllm.linear %x, %w {act_quant = "per_token"} : tensor<?x?x32xf32>, tensor<16x32xf32> -> tensor<?x?x16xf32>
  // CHECK: qllm.linear %{{.+}}, %{{.+}} {act_quant = "per_tensor", act_scale = 2.500000e-02 : f32}
  %b = qllm.linear %x, %w {act_quant = "per_tensor", act_scale = 0.025 : f32} : tensor<?x?x32xf32>, tensor<16x32xf32> -> tensor<?x?x16xf32>
  // CHECK: qllm.linear %{{.+}}, %{{.+}} {act_quant = "per_token", act_quant_type = "fp8_e4m3"}
  %c = qllm.linear %x, %w {act_quant = "per_token", act_quant_type = "fp8_e4m3"} : tensor<?x?x32xf32>, tensor<16x32xf32> -> tensor<?x?x16xf32>
  return %a, %b, %c : tensor<?x?x16xf32>, tensor<?x?x16xf32>, tensor<?x?x16xf32>
}

// CHECK-LABEL: func.func @kv_cache
func.func @kv_cache(%q: tensor<?x?x64xf32>, %kv: tensor<?x?x32xf32>) -> tensor<?x?x64xf32> {
  // CHECK: qllm.attention %{{.+}}, %{{.+}}, %{{.+}} {head_dim = 16 : i64, k_scales = array<f32: 1.000000e-01, 2.000000e-01>, kv_cache_dtype = "int8", num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 2.500000e-01 : f64, v_scales = array<f32: 3.000000e-01, 4.000000e-01>}
  %a = qllm.attention %q, %kv, %kv {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, kv_cache_dtype = "int8", k_scales = array<f32: 0.1, 0.2>, v_scales = array<f32: 0.3, 0.4>} : tensor<?x?x64xf32>, tensor<?x?x32xf32>, tensor<?x?x32xf32> -> tensor<?x?x64xf32>
  return %a : tensor<?x?x64xf32>
}
