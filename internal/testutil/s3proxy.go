package testutil

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// S3Proxy is a reverse proxy in front of an S3 server (a versitygw from
// StartVersityGW) that can lose answers: an armed request is forwarded, the
// server applies it, and the client gets 500 InternalError instead of the
// server's answer, as when a load balancer or a connection drops the answer
// of a write that succeeded. Requests pass with their Host header, so SigV4
// signatures made for the proxy's address still verify at the server.
type S3Proxy struct {
	// Endpoint is the proxy's http://127.0.0.1:PORT, the endpoint clients use.
	Endpoint string

	target *url.URL
	rp     *httputil.ReverseProxy
	mu     sync.Mutex
	rules  []*loseRule
	lost   []string
}

// loseRule loses the answer to the nth request that matches.
type loseRule struct {
	match func(*http.Request) bool
	nth   int
	seen  int
}

// StartS3Proxy serves a proxy to the S3 server at endpoint (http://host:port)
// until the test ends.
func StartS3Proxy(t testing.TB, endpoint string) *S3Proxy {
	t.Helper()
	target, err := url.Parse(endpoint)
	if err != nil || target.Host == "" {
		t.Fatalf("S3 proxy: bad endpoint %q: %v", endpoint, err)
	}
	p := &S3Proxy{target: target}
	p.rp = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // signed by the client
	}}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.Endpoint = srv.URL
	return p
}

// LoseAnswer arms the proxy: of the requests from now on for which match
// returns true, the nth (1-based) is applied by the server and answered 500.
func (p *S3Proxy) LoseAnswer(nth int, match func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, &loseRule{match: match, nth: nth})
}

// Lost returns "METHOD path" of every request whose answer was lost so far.
func (p *S3Proxy) Lost() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lost...)
}

// Armed reports how many armed rules have not fired yet.
func (p *S3Proxy) Armed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.rules)
}

// ConditionalPut matches a PUT with If-Match or If-None-Match of a key
// ending in suffix (e.g. "/state.json"): the compare-and-swap writes.
func ConditionalPut(suffix string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, suffix) &&
			(r.Header.Get("If-Match") != "" || r.Header.Get("If-None-Match") != "")
	}
}

// Request matches method on a key ending in suffix.
func Request(method, suffix string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return r.Method == method && strings.HasSuffix(r.URL.Path, suffix)
	}
}

// fires reports whether r's answer is to be lost, consuming the rule.
func (p *S3Proxy) fires(r *http.Request) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, rule := range p.rules {
		if !rule.match(r) {
			continue
		}
		rule.seen++
		if rule.seen < rule.nth {
			continue
		}
		p.rules = append(p.rules[:i], p.rules[i+1:]...)
		p.lost = append(p.lost, r.Method+" "+r.URL.Path)
		return true
	}
	return false
}

func (p *S3Proxy) serve(w http.ResponseWriter, r *http.Request) {
	if !p.fires(r) {
		p.rp.ServeHTTP(w, r)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = p.target.Scheme, p.target.Host
	out.Host = r.Host
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body) // the answer the client never sees
	_ = resp.Body.Close()
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>`)
}
