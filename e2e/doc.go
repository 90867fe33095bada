// Package e2e drives the built dynia binary like a user, against the local
// sandbox: a simulated DigitalOcean whose droplets are network namespaces
// running the real dynia-pull, HAProxy and keepalived. Its tests need root;
// BenchmarkFailover measures Reserved IP failover (make bench).
package e2e
