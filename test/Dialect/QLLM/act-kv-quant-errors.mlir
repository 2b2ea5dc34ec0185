// RUN: qopt-opt %s -split-input-file -verify-diagnostics
// One case per diagnostic of the activation and KV-cache quantization attributes.

func.func @act_mode(%x: tensor<?x?x4xf32>, %w: tensor<4x4xf32>) {
  // expected-error @+1 {{act_quant must be "per_token" or "per_tensor", got "per_row"}}
  %y = qllm.linear %x, %w {act_quant = "per_row"} : tensor<?x?x4xf32>, tensor<4x4xf32> -> tensor<?x?x4xf32>
  return
}

// -----

func.func @act_tensor_no_scale(%x: tensor<?x?x4xf32>, %w: tensor<4x4xf32>) {
  // expected-error @+1 {{act_quant = "per_tensor" needs a calibrated act_scale}}
  %y = qllm.linear %x, %w {act_quant = "per_tensor"} : tensor<?x?x4xf32>, tensor<4x4xf32> -> tensor<?x?x4xf32>
  return
}

// -----

func.func @act_scale_per_token(%x: tensor<?x?x4xf32>, %w: tensor<4x4xf32>) {
  // expected-error @+1 {{act_scale is only meaningful with act_quant = "per_tensor"}}
  %y = qllm.linear %x, %w {act_quant = "per_token", act_scale = 1.0 : f32} : tensor<?x?x4xf32>, tensor<4x4xf32> -> tensor<?x?x4xf32>
  return
}

// -----

func.func @act_scale_alone(%x: tensor<?x?x4xf32>, %w: tensor<4x4xf32>) {
  // expected-error @+1 {{act_scale is only meaningful with act_quant = "per_tensor"}}
  %y = qllm.linear %x, %w {act_scale = 1.0 : f32} : tensor<?x?x4xf32>, tensor<4x4xf32> -> tensor<?x?x4xf32>
  return
}

// -----

func.func @act_scale_zero(%x: tensor<?x?x4xf32>, %w: tensor<4x4xf32>) {
  // expected-error @+1 {{act_scale must be positive and finite}}
  %y = qllm.linear %x, %w {act_quant = "per_tensor", act_scale = 0.0 : f32} : tensor<?x?x4xf32>, tensor<4x4xf32> -> tensor<?x?x4xf32>
  return
}

// -----

func.func @act_type_alone(%x: tensor<?x?x4xf32>, %w: tensor<4x4xf32>) {
  // expected-error @+1 {{act_quant_type needs act_quant}}
  %y = qllm.linear %x, %w {act_quant_type = "int8"} : tensor<?x?x4xf32>, tensor<4x4xf32> -> tensor<?x?x4xf32>
  return
}

// -----

func.func @act_type(%x: tensor<?x?x4xf32>, %w: tensor<4x4xf32>) {
  // expected-error @+1 {{act_quant_type must be "int8" or "fp8_e4m3", got "int4"}}
  %y = qllm.linear %x, %w {act_quant = "per_token", act_quant_type = "int4"} : tensor<?x?x4xf32>, tensor<4x4xf32> -> tensor<?x?x4xf32>
  return
}

// -----

func.func @kv_scales_alone(%q: tensor<?x?x32xf32>, %kv: tensor<?x?x16xf32>) {
  // expected-error @+1 {{k_scales and v_scales need kv_cache_dtype}}
  %a = qllm.attention %q, %kv, %kv {num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 16 : i64, scale = 0.25 : f64, k_scales = array<f32: 1.0>} : tensor<?x?x32xf32>, tensor<?x?x16xf32>, tensor<?x?x16xf32> -> tensor<?x?x32xf32>
  return
}

// -----

func.func @kv_dtype(%q: tensor<?x?x32xf32>, %kv: tensor<?x?x16xf32>) {
  // expected-error @+1 {{kv_cache_dtype must be "int8" or "fp8_e4m3", got "int4"}}
  %a = qllm.attention %q, %kv, %kv {num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 16 : i64, scale = 0.25 : f64, kv_cache_dtype = "int4", k_scales = array<f32: 1.0>, v_scales = array<f32: 1.0>} : tensor<?x?x32xf32>, tensor<?x?x16xf32>, tensor<?x?x16xf32> -> tensor<?x?x32xf32>
  return
}

// -----

func.func @kv_missing(%q: tensor<?x?x32xf32>, %kv: tensor<?x?x16xf32>) {
  // expected-error @+1 {{kv_cache_dtype needs both k_scales and v_scales}}
  %a = qllm.attention %q, %kv, %kv {num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 16 : i64, scale = 0.25 : f64, kv_cache_dtype = "int8", k_scales = array<f32: 1.0>} : tensor<?x?x32xf32>, tensor<?x?x16xf32>, tensor<?x?x16xf32> -> tensor<?x?x32xf32>
  return
}

// -----

func.func @kv_length(%q: tensor<?x?x64xf32>, %kv: tensor<?x?x32xf32>) {
  // expected-error @+1 {{v_scales has 1 entries, expected num_kv_heads (2)}}
  %a = qllm.attention %q, %kv, %kv {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, kv_cache_dtype = "fp8_e4m3", k_scales = array<f32: 1.0, 2.0>, v_scales = array<f32: 1.0>} : tensor<?x?x64xf32>, tensor<?x?x32xf32>, tensor<?x?x32xf32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @kv_positive(%q: tensor<?x?x64xf32>, %kv: tensor<?x?x32xf32>) {
  // expected-error @+1 {{k_scales must be positive and finite, got -1}}
  %a = qllm.attention %q, %kv, %kv {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, kv_cache_dtype = "int8", k_scales = array<f32: 1.0, -1.0>, v_scales = array<f32: 1.0, 2.0>} : tensor<?x?x64xf32>, tensor<?x?x32xf32>, tensor<?x?x32xf32> -> tensor<?x?x64xf32>
  return
}
