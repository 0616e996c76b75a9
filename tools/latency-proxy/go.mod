module aim.eai.amd.com/tools/latency-proxy

go 1.26
