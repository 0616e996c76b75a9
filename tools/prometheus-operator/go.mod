// Pins the prometheus-operator release whose CustomResourceDefinitions (PrometheusRule,
// PodMonitor) the test suite installs on its kube-apiserver and validates the monitoring
// objects against (tools/build.sh prometheus-operator copies them out of the module). Nothing
// here is compiled: the module is only downloaded, and go.sum pins its content.
module aim-accelerator/tools/prometheus-operator

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0 // indirect
