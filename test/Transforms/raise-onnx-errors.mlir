// RUN: qopt-opt %s -qopt-raise-onnx -verify-diagnostics
// A graph that does not raise completely is an error naming the first node
// left over, never a silent mis-import.

module {
  func.func @main_graph(%ids: tensor<?x?xi64>) -> tensor<?x?xf32> {
    // expected-error @+1 {{first node left over: the_cast (Cast)}}
    %0 = qonnx.node "Cast"(%ids) {node_name = "the_cast", domain = "", opset = 20 : i64, onnx_attrs = {to = 1 : i64}} : (tensor<?x?xi64>) -> tensor<?x?xf32>
    %1 = qonnx.node "Tanh"(%0) {node_name = "the_tanh_node", domain = "", opset = 20 : i64, onnx_attrs = {}} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    return %1 : tensor<?x?xf32>
  }
}
