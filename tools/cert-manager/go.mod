// Pins the cert-manager release whose CustomResourceDefinitions (Issuer, Certificate) the
// webhook's cert-manager component is validated against, and which the test suite installs on
// its kube-apiserver (tools/build.sh cert-manager copies them out of the module). Nothing here
// is compiled: the module is only downloaded, and go.sum pins its content.
module aim-accelerator/tools/cert-manager

go 1.26.0

require github.com/cert-manager/cert-manager v1.21.2 // indirect
