// RUN: qopt-opt %s -split-input-file -verify-diagnostics
// One case per diagnostic of the QLLM verifiers.

func.func @param_empty_name() {
  // expected-error @+1 {{needs a non-empty weight name}}
  %w = qllm.param "" : tensor<4x4xf32>
  return
}

// -----

func.func @param_dynamic() {
  // expected-error @+1 {{must have a static shape}}
  %w = qllm.param "w" : tensor<?x4xf32>
  return
}

// -----

func.func @qparam_empty_name() {
  // expected-error @+1 {{needs a non-empty weight name}}
  %w = qllm.qparam "" : !qllm.qweight<[4, 4], #qllm.quant<kind = int, bits = 4, group_size = 32, symmetric = true, scale_type = f16, layout = "rowmajor_u4">>
  return
}

// -----

// expected-error @+1 {{int quantization needs 2..8 bits, got 9}}
func.func @bits() attributes {q = #qllm.quant<kind = int, bits = 9, group_size = 32, symmetric = true, scale_type = f16, layout = "l">} { return }

// -----

// expected-error @+1 {{nf4 is a 4-bit format, got bits = 3}}
func.func @nf4_bits() attributes {q = #qllm.quant<kind = nf4, bits = 3, group_size = 64, symmetric = true, scale_type = f16, layout = "l">} { return }

// -----

// expected-error @+1 {{nf4 is symmetric (absmax scaled)}}
func.func @nf4_asym() attributes {q = #qllm.quant<kind = nf4, bits = 4, group_size = 64, symmetric = false, scale_type = f16, zero_type = f16, layout = "l">} { return }

// -----

// expected-error @+1 {{fp8_e4m3 is an 8-bit format, got bits = 4}}
func.func @fp8_bits() attributes {q = #qllm.quant<kind = fp8_e4m3, bits = 4, group_size = -1, symmetric = true, scale_type = f32, layout = "l">} { return }

// -----

// expected-error @+1 {{fp8_e4m3 is symmetric}}
func.func @fp8_asym() attributes {q = #qllm.quant<kind = fp8_e4m3, bits = 8, group_size = -1, symmetric = false, scale_type = f32, zero_type = f32, layout = "l">} { return }

// -----

// expected-error @+1 {{group_size must be -1 (per channel) or positive, got 0}}
func.func @group() attributes {q = #qllm.quant<kind = int, bits = 4, group_size = 0, symmetric = true, scale_type = f16, layout = "l">} { return }

// -----

// expected-error @+1 {{scale_type must be a float type}}
func.func @scale_type() attributes {q = #qllm.quant<kind = int, bits = 4, group_size = 32, symmetric = true, scale_type = i8, layout = "l">} { return }

// -----

// expected-error @+1 {{a symmetric format has no zero points}}
func.func @sym_zero() attributes {q = #qllm.quant<kind = int, bits = 4, group_size = 32, symmetric = true, scale_type = f16, zero_type = i8, layout = "l">} { return }

// -----

// expected-error @+1 {{an asymmetric format needs a zero_type}}
func.func @asym_nozero() attributes {q = #qllm.quant<kind = int, bits = 4, group_size = 32, symmetric = false, scale_type = f16, layout = "l">} { return }

// -----

// expected-error @+1 {{zero_type must be an integer or float type}}
func.func @zero_type() attributes {q = #qllm.quant<kind = int, bits = 4, group_size = 32, symmetric = false, scale_type = f16, zero_type = index, layout = "l">} { return }

// -----

// expected-error @+1 {{layout must name a packed layout}}
func.func @layout() attributes {q = #qllm.quant<kind = int, bits = 4, group_size = 32, symmetric = true, scale_type = f16, layout = "">} { return }

// -----

// expected-error @+1 {{a quantized weight is 2-D [out, in], got rank 3}}
func.func @qweight_rank(%w: !qllm.qweight<[4, 4, 4], #qllm.quant<kind = int, bits = 4, group_size = 32, symmetric = true, scale_type = f16, layout = "l">>) { return }

// -----

// expected-error @+1 {{quantized weight dimensions must be positive}}
func.func @qweight_dims(%w: !qllm.qweight<[0, 4], #qllm.quant<kind = int, bits = 4, group_size = 32, symmetric = true, scale_type = f16, layout = "l">>) { return }

// -----

// expected-error @+1 {{nf4 needs a block size (group_size), not per-channel}}
func.func @nf4_channel() attributes {q = #qllm.quant<kind = nf4, bits = 4, group_size = -1, symmetric = true, scale_type = f16, layout = "l">} { return }

// -----

func.func @embedding_ids(%ids: tensor<?xi64>, %t: tensor<8x4xf32>) {
  // expected-error @+1 {{ids must be [batch, seq], got rank 1}}
  %x = qllm.embedding %ids, %t : (tensor<?xi64>, tensor<8x4xf32>) -> tensor<?x?x4xf32>
  return
}

// -----

func.func @embedding_table(%ids: tensor<?x?xi64>, %t: tensor<8xf32>) {
  // expected-error @+1 {{table must be 2-D [vocab, hidden]}}
  %x = qllm.embedding %ids, %t : (tensor<?x?xi64>, tensor<8xf32>) -> tensor<?x?x4xf32>
  return
}

// -----

func.func @embedding_rank(%ids: tensor<?x?xi64>, %t: tensor<8x4xf32>) {
  // expected-error @+1 {{result must be [batch, seq, hidden]}}
  %x = qllm.embedding %ids, %t : (tensor<?x?xi64>, tensor<8x4xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @embedding_rows(%ids: tensor<2x3xi64>, %t: tensor<8x4xf32>) {
  // expected-error @+1 {{result dimension 1 differs from ids}}
  %x = qllm.embedding %ids, %t : (tensor<2x3xi64>, tensor<8x4xf32>) -> tensor<2x5x4xf32>
  return
}

// -----

func.func @embedding_hidden(%ids: tensor<?x?xi64>, %t: tensor<8x4xf32>) {
  // expected-error @+1 {{result hidden size (5) differs from the table's (4)}}
  %x = qllm.embedding %ids, %t : (tensor<?x?xi64>, tensor<8x4xf32>) -> tensor<?x?x5xf32>
  return
}

// -----

func.func @norm_rank(%x: tensor<?x?x4xf32>, %w: tensor<4x4xf32>) {
  // expected-error @+1 {{weight must be 1-D, got rank 2}}
  %y = qllm.rms_norm %x, %w {epsilon = 1.0e-5 : f64} : tensor<?x?x4xf32>, tensor<4x4xf32>
  return
}

// -----

func.func @norm_size(%x: tensor<?x?x4xf32>, %w: tensor<5xf32>) {
  // expected-error @+1 {{weight size (5) differs from the normalized dimension (4)}}
  %y = qllm.rms_norm %x, %w {epsilon = 1.0e-5 : f64} : tensor<?x?x4xf32>, tensor<5xf32>
  return
}

// -----

func.func @norm_eps(%x: tensor<?x?x4xf32>, %w: tensor<4xf32>) {
  // expected-error @+1 {{epsilon must be positive}}
  %y = qllm.rms_norm %x, %w {epsilon = 0.0 : f64} : tensor<?x?x4xf32>, tensor<4xf32>
  return
}

// -----

func.func @linear_weight_rank(%x: tensor<?x?x4xf32>, %w: tensor<4xf32>) {
  // expected-error @+1 {{weight must be 2-D [out_features, in_features]}}
  %y = qllm.linear %x, %w : tensor<?x?x4xf32>, tensor<4xf32> -> tensor<?x?x4xf32>
  return
}

// -----

func.func @linear_input_rank(%x: tensor<4xf32>, %w: tensor<4x4xf32>) {
  // expected-error @+1 {{input must have rank >= 2, got 1}}
  %y = qllm.linear %x, %w : tensor<4xf32>, tensor<4x4xf32> -> tensor<4xf32>
  return
}

// -----

func.func @linear_in(%x: tensor<?x?x4xf32>, %w: tensor<8x5xf32>) {
  // expected-error @+1 {{input features (4) differ from weight in_features (5)}}
  %y = qllm.linear %x, %w : tensor<?x?x4xf32>, tensor<8x5xf32> -> tensor<?x?x8xf32>
  return
}

// -----

func.func @linear_out(%x: tensor<?x?x4xf32>, %w: tensor<8x4xf32>) {
  // expected-error @+1 {{result features (7) differ from weight out_features (8)}}
  %y = qllm.linear %x, %w : tensor<?x?x4xf32>, tensor<8x4xf32> -> tensor<?x?x7xf32>
  return
}

// -----

func.func @linear_rows(%x: tensor<2x3x4xf32>, %w: tensor<8x4xf32>) {
  // expected-error @+1 {{result dimension 1 (5) differs from input (3)}}
  %y = qllm.linear %x, %w : tensor<2x3x4xf32>, tensor<8x4xf32> -> tensor<2x5x8xf32>
  return
}

// -----

func.func @linear_result_rank(%x: tensor<2x3x4xf32>, %w: tensor<8x4xf32>) {
  // expected-error @+1 {{result rank 2 differs from input rank 3}}
  %y = qllm.linear %x, %w : tensor<2x3x4xf32>, tensor<8x4xf32> -> tensor<6x8xf32>
  return
}

// -----

func.func @linear_bias(%x: tensor<?x?x4xf32>, %w: tensor<8x4xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{bias must be 1-D of out_features (8)}}
  %y = qllm.linear %x, %w, %b : tensor<4xf32> : tensor<?x?x4xf32>, tensor<8x4xf32> -> tensor<?x?x8xf32>
  return
}

// -----

func.func @lm_head(%x: tensor<?x?x4xf32>, %w: tensor<8x4xf32>) {
  // expected-error @+1 {{result features (9) differ from weight out_features (8)}}
  %y = qllm.lm_head %x, %w : tensor<?x?x4xf32>, tensor<8x4xf32> -> tensor<?x?x9xf32>
  return
}

// -----

func.func @rotary_heads(%x: tensor<?x?x32xf32>) {
  // expected-error @+1 {{num_heads and head_dim must be positive}}
  %y = qllm.rotary %x {num_heads = 0 : i64, head_dim = 16 : i64, theta = 1.0e4 : f64} : tensor<?x?x32xf32>
  return
}

// -----

func.func @rotary_odd(%x: tensor<?x?x30xf32>) {
  // expected-error @+1 {{head_dim must be even, got 15}}
  %y = qllm.rotary %x {num_heads = 2 : i64, head_dim = 15 : i64, theta = 1.0e4 : f64} : tensor<?x?x30xf32>
  return
}

// -----

func.func @rotary_features(%x: tensor<?x?x32xf32>) {
  // expected-error @+1 {{feature size (32) is not num_heads * head_dim (48)}}
  %y = qllm.rotary %x {num_heads = 3 : i64, head_dim = 16 : i64, theta = 1.0e4 : f64} : tensor<?x?x32xf32>
  return
}

// -----

func.func @rotary_dim(%x: tensor<?x?x32xf32>) {
  // expected-error @+1 {{rotary_dim must be even and in (0, head_dim], got 18}}
  %y = qllm.rotary %x {num_heads = 2 : i64, head_dim = 16 : i64, rotary_dim = 18 : i64, theta = 1.0e4 : f64} : tensor<?x?x32xf32>
  return
}

// -----

func.func @rotary_theta(%x: tensor<?x?x32xf32>) {
  // expected-error @+1 {{theta must be positive}}
  %y = qllm.rotary %x {num_heads = 2 : i64, head_dim = 16 : i64, theta = -1.0 : f64} : tensor<?x?x32xf32>
  return
}

// -----

func.func @rotary_scaling_type(%x: tensor<?x?x32xf32>) {
  // expected-error @+1 {{scaling needs a string 'rope_type'}}
  %y = qllm.rotary %x {num_heads = 2 : i64, head_dim = 16 : i64, theta = 1.0e4 : f64, scaling = {factor = 2.0 : f64}} : tensor<?x?x32xf32>
  return
}

// -----

func.func @rotary_scaling_unknown(%x: tensor<?x?x32xf32>) {
  // expected-error @+1 {{unsupported rope_type 'yarn' (supported: default, linear, llama3)}}
  %y = qllm.rotary %x {num_heads = 2 : i64, head_dim = 16 : i64, theta = 1.0e4 : f64, scaling = {rope_type = "yarn"}} : tensor<?x?x32xf32>
  return
}

// -----

func.func @rotary_scaling_factor(%x: tensor<?x?x32xf32>) {
  // expected-error @+1 {{rope_type 'linear' needs a float 'factor'}}
  %y = qllm.rotary %x {num_heads = 2 : i64, head_dim = 16 : i64, theta = 1.0e4 : f64, scaling = {rope_type = "linear"}} : tensor<?x?x32xf32>
  return
}

// -----

func.func @rotary_llama3(%x: tensor<?x?x32xf32>) {
  // expected-error @+1 {{rope_type 'llama3' needs 'low_freq_factor'}}
  %y = qllm.rotary %x {num_heads = 2 : i64, head_dim = 16 : i64, theta = 1.0e4 : f64, scaling = {rope_type = "llama3", factor = 8.0 : f64}} : tensor<?x?x32xf32>
  return
}

// -----

func.func @attn_heads(%q: tensor<?x?x32xf32>, %kv: tensor<?x?x16xf32>) {
  // expected-error @+1 {{num_heads, num_kv_heads and head_dim must be positive}}
  %a = qllm.attention %q, %kv, %kv {num_heads = 2 : i64, num_kv_heads = 0 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : tensor<?x?x32xf32>, tensor<?x?x16xf32>, tensor<?x?x16xf32> -> tensor<?x?x32xf32>
  return
}

// -----

func.func @attn_groups(%q: tensor<?x?x48xf32>, %kv: tensor<?x?x32xf32>) {
  // expected-error @+1 {{num_heads (3) is not a multiple of num_kv_heads (2)}}
  %a = qllm.attention %q, %kv, %kv {num_heads = 3 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : tensor<?x?x48xf32>, tensor<?x?x32xf32>, tensor<?x?x32xf32> -> tensor<?x?x48xf32>
  return
}

// -----

func.func @attn_rank(%q: tensor<?x32xf32>, %kv: tensor<?x?x16xf32>) {
  // expected-error @+1 {{query, key, value and result must be [batch, seq, features]}}
  %a = qllm.attention %q, %kv, %kv {num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : tensor<?x32xf32>, tensor<?x?x16xf32>, tensor<?x?x16xf32> -> tensor<?x?x32xf32>
  return
}

// -----

func.func @attn_q(%q: tensor<?x?x30xf32>, %kv: tensor<?x?x16xf32>) {
  // expected-error @+1 {{query features (30) are not num_heads * head_dim (32)}}
  %a = qllm.attention %q, %kv, %kv {num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : tensor<?x?x30xf32>, tensor<?x?x16xf32>, tensor<?x?x16xf32> -> tensor<?x?x32xf32>
  return
}

// -----

func.func @attn_kv(%q: tensor<?x?x32xf32>, %kv: tensor<?x?x32xf32>) {
  // expected-error @+1 {{key/value features are not num_kv_heads * head_dim (16)}}
  %a = qllm.attention %q, %kv, %kv {num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : tensor<?x?x32xf32>, tensor<?x?x32xf32>, tensor<?x?x32xf32> -> tensor<?x?x32xf32>
  return
}

// -----

func.func @attn_result(%q: tensor<?x?x32xf32>, %kv: tensor<?x?x16xf32>) {
  // expected-error @+1 {{result features are not num_heads * head_dim}}
  %a = qllm.attention %q, %kv, %kv {num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : tensor<?x?x32xf32>, tensor<?x?x16xf32>, tensor<?x?x16xf32> -> tensor<?x?x16xf32>
  return
}

// -----

func.func @attn_seq(%q: tensor<1x4x32xf32>, %kv: tensor<1x5x16xf32>) {
  // expected-error @+1 {{query, key, value and result disagree in dimension 1}}
  %a = qllm.attention %q, %kv, %kv {num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : tensor<1x4x32xf32>, tensor<1x5x16xf32>, tensor<1x5x16xf32> -> tensor<1x4x32xf32>
  return
}

// -----

func.func @attn_scale(%q: tensor<?x?x32xf32>, %kv: tensor<?x?x16xf32>) {
  // expected-error @+1 {{scale must be positive}}
  %a = qllm.attention %q, %kv, %kv {num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 16 : i64, scale = 0.0 : f64} : tensor<?x?x32xf32>, tensor<?x?x16xf32>, tensor<?x?x16xf32> -> tensor<?x?x32xf32>
  return
}
