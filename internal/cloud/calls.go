package cloud

import (
	"net/http"
	"strings"
	"sync"
)

// callCounter counts requests by route template.
type callCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func newCallCounter() *callCounter { return &callCounter{n: map[string]int{}} }

func (c *callCounter) add(key string) {
	c.mu.Lock()
	c.n[key]++
	c.mu.Unlock()
}

func (c *callCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

func (c *callCounter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := 0
	for _, v := range c.n {
		t += v
	}
	return t
}

func (c *callCounter) reset() {
	c.mu.Lock()
	clear(c.n)
	c.mu.Unlock()
}

// countingTransport counts every request that reaches the wire.
type countingTransport struct {
	base    http.RoundTripper
	counter *callCounter
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.counter.add(req.Method + " " + routeTemplate(req.URL.Path))
	return t.base.RoundTrip(req)
}

// routeTemplate turns a request path into its route:
// /v2/reserved_ips/192.0.2.1/actions/7 -> /v2/reserved_ips/{ip}/actions/{id}.
// DO's paths alternate collection and identifier after /v2, except for a few
// fixed words that sit where an identifier would.
func routeTemplate(p string) string {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	start := -1
	for i, s := range segs {
		if s == "v2" {
			start = i
			break
		}
	}
	if start < 0 {
		return p
	}
	segs = segs[start:]
	for i := 2; i < len(segs); i += 2 {
		if fixedSegment[segs[i]] {
			// e.g. /v2/droplets/actions, /v2/spaces/keys: shift the pattern.
			i--
			continue
		}
		segs[i] = paramName(segs[i-1])
	}
	return "/" + strings.Join(segs, "/")
}

var fixedSegment = map[string]bool{"actions": true, "keys": true}

func paramName(collection string) string {
	switch collection {
	case "reserved_ips", "floating_ips":
		return "{ip}"
	case "domains":
		return "{domain}"
	case "tags":
		return "{tag}"
	}
	return "{id}"
}
