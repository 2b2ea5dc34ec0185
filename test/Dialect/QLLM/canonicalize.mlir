// RUN: qopt-opt %s -canonicalize -split-input-file | FileCheck %s
// RUN: qopt-opt %s -cse -split-input-file | FileCheck %s --check-prefix=CSE

// A rotary_dim equal to head_dim and a "default" scaling say nothing: dropped.
// CHECK-LABEL: func.func @rotary_spellings
// CHECK: qllm.rotary %{{.+}} {head_dim = 16 : i64, num_heads = 2 : i64, theta = 1.000000e+04 : f64}
// CHECK-NEXT: qllm.rotary %{{.+}} {head_dim = 16 : i64, num_heads = 2 : i64, theta = 1.000000e+04 : f64}
// CHECK-NEXT: qllm.rotary %{{.+}} {head_dim = 16 : i64, num_heads = 2 : i64, rotary_dim = 8 : i64, theta = 1.000000e+04 : f64}
func.func @rotary_spellings(%x: tensor<?x?x32xf32>) -> (tensor<?x?x32xf32>, tensor<?x?x32xf32>, tensor<?x?x32xf32>) {
  %a = qllm.rotary %x {num_heads = 2 : i64, head_dim = 16 : i64, rotary_dim = 16 : i64, theta = 10000.0 : f64} : tensor<?x?x32xf32>
  %b = qllm.rotary %a {num_heads = 2 : i64, head_dim = 16 : i64, theta = 10000.0 : f64, scaling = {rope_type = "default"}} : tensor<?x?x32xf32>
  %c = qllm.rotary %b {num_heads = 2 : i64, head_dim = 16 : i64, rotary_dim = 8 : i64, theta = 10000.0 : f64} : tensor<?x?x32xf32>
  return %a, %b, %c : tensor<?x?x32xf32>, tensor<?x?x32xf32>, tensor<?x?x32xf32>
}

// -----

// Two references to one stored tensor (a tied lm_head) become one value.
// CSE-LABEL: func.func @tied
// CSE: %[[E:.+]] = qllm.param "model.embed_tokens.weight"
// CSE-NOT: qllm.param
// CSE: qllm.lm_head %{{.+}}, %[[E]]
func.func @tied(%ids: tensor<?x?xi64>) -> tensor<?x?x64xf32> {
  %e = qllm.param "model.embed_tokens.weight" : tensor<64x32xf32>
  %x = qllm.embedding %ids, %e : (tensor<?x?xi64>, tensor<64x32xf32>) -> tensor<?x?x32xf32>
  %e2 = qllm.param "model.embed_tokens.weight" : tensor<64x32xf32>
  %l = qllm.lm_head %x, %e2 : tensor<?x?x32xf32>, tensor<64x32xf32> -> tensor<?x?x64xf32>
  return %l : tensor<?x?x64xf32>
}
