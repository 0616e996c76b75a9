// latency-proxy stands between a client and kube-apiserver and answers every write
// (POST, PUT, PATCH, DELETE) a fixed delay late, as a loaded etcd would; reads, lists and
// watches pass at once and stream. It is how benchmarks/bench_controller.py gives the real
// kube-apiserver the same write latency its test API server emulates
// (faults.set_latency(..., writes_only=True)): the delay comes first, then the request is
// forwarded, and requests are served concurrently, so the delay adds latency, not a cap on
// throughput. It is written in Go, not Python, so that the proxy's own CPU time (it carries
// every byte of a 20,000-node list) stays out of the figures it serves.
//
//	latency-proxy -listen 127.0.0.1:PORT -upstream https://127.0.0.1:6443 -ca ca.crt -write-latency 5ms
//
// The client speaks plain HTTP/1.1 to it on loopback; its Authorization header is passed on
// to the upstream over TLS, verified against -ca. "ready" is printed once it listens.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (plain HTTP)")
	upstream := flag.String("upstream", "", "kube-apiserver URL (https://host:port)")
	caFile := flag.String("ca", "", "CA bundle that signed the upstream's serving certificate")
	latency := flag.Duration("write-latency", 5*time.Millisecond, "delay before each write")
	flag.Parse()

	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		log.Fatalf("-upstream: a URL such as https://127.0.0.1:6443 is needed, got %q", *upstream)
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			log.Fatalf("-ca: %v", err)
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		if !tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
			log.Fatalf("-ca: no certificate in %s", *caFile)
		}
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	// HTTP/1.1 to the upstream too, one connection per concurrent request, as the client
	// would have had talking to kube-apiserver itself.
	proxy.Transport = &http.Transport{
		TLSClientConfig:     tlsConfig,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	proxy.FlushInterval = -1 // watches: every event as it comes
	proxy.ErrorLog = log.New(os.Stderr, "latency-proxy: ", log.LstdFlags)

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			time.Sleep(*latency)
		}
		proxy.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("-listen: %v", err)
	}
	fmt.Printf("ready %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, handler))
}
