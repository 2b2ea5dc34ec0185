// RUN: qopt-opt %s | qopt-opt | FileCheck %s
// Round trip of the generic ONNX ops the importer maps nodes onto.

// CHECK-LABEL: func.func @graph
func.func @graph(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  // CHECK: %[[C:.+]] = qonnx.constant "val_3" dense<2.000000e+00> : tensor<f32>
  %c = qonnx.constant "val_3" dense<2.0> : tensor<f32> : tensor<f32>
  // CHECK: %[[N:.+]] = qonnx.none
  %n = qonnx.none
  // CHECK: qonnx.node "Pow"(%{{.+}}, %[[C]]) {domain = "", node_name = "node_pow", onnx_attrs = {}, opset = 20 : i64} : (tensor<?x4xf32>, tensor<f32>) -> tensor<?x4xf32>
  %p = qonnx.node "Pow"(%x, %c) {node_name = "node_pow", domain = "", opset = 20 : i64, onnx_attrs = {}} : (tensor<?x4xf32>, tensor<f32>) -> tensor<?x4xf32>
  // CHECK: qonnx.node "Slice"(%{{.+}}, %[[N]]) {{.*}}onnx_attrs = {axis = -1 : i64}
  %s = qonnx.node "Slice"(%p, %n) {node_name = "node_slice", domain = "", opset = 20 : i64, onnx_attrs = {axis = -1 : i64}} : (tensor<?x4xf32>, none) -> tensor<?x4xf32>
  return %s : tensor<?x4xf32>
}
