// Package dnsserver is the sandbox's authoritative DNS server: it answers A
// queries, over UDP and TCP, from the records its sources return at query
// time, so a record created through the DigitalOcean simulator's domains
// API or the Cloudflare simulator (internal/cfsim) decides where a name
// resolves, and where Pebble validates an ACME HTTP-01 challenge.
//
// Answers, per RFC 1034/2308: a name with A records gets them
// (authoritative); a name that exists (it has records, or names below it
// do) but has no record of the asked type gets NOERROR with no answer
// (NODATA); any other name gets NXDOMAIN. There is no SOA in the
// authority section, no recursion, no zone transfer, no DNSSEC.
package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Record is one A record a source serves.
type Record struct {
	Name string     // "app.example.test" (case and a trailing dot do not matter)
	IP   netip.Addr // IPv4; other addresses are skipped
	TTL  uint32     // seconds; 0 means 60
}

// Records returns the records of one source at query time. It must be
// cheap and safe to call concurrently (the sandbox wires dosim's domain
// records and cfsim's Records through small adapters).
type Records func() []Record

// Server answers from its sources. It implements dns.Handler.
type Server struct {
	sources []Records
	log     *slog.Logger
}

// New returns a server answering from sources; log may be nil.
func New(log *slog.Logger, sources ...Records) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{sources: sources, log: log}
}

func norm(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// lookup returns the A records of name and whether the name exists.
func (s *Server) lookup(name string) (recs []Record, exists bool) {
	name = norm(name)
	for _, src := range s.sources {
		for _, r := range src() {
			rn := norm(r.Name)
			switch {
			case rn == name:
				exists = true
				if r.IP.Is4() {
					recs = append(recs, r)
				}
			case strings.HasSuffix(rn, "."+name):
				exists = true // an empty non-terminal (RFC 8020)
			}
		}
	}
	return recs, exists
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = false
	switch {
	case req.Opcode != dns.OpcodeQuery:
		m.SetRcode(req, dns.RcodeNotImplemented)
	case len(req.Question) != 1:
		m.SetRcode(req, dns.RcodeFormatError)
	default:
		q := req.Question[0]
		recs, exists := s.lookup(q.Name)
		switch {
		case q.Qclass != dns.ClassINET:
			m.SetRcode(req, dns.RcodeRefused)
		case !exists:
			m.SetRcode(req, dns.RcodeNameError)
		case q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY:
			seen := map[netip.Addr]bool{}
			for _, r := range recs {
				if seen[r.IP] {
					continue
				}
				seen[r.IP] = true
				ttl := r.TTL
				if ttl == 0 {
					ttl = 60
				}
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
					A:   net.IP(r.IP.AsSlice()),
				})
			}
		}
	}
	if len(req.Question) == 1 {
		s.log.Debug("dnsserver: answer", "name", req.Question[0].Name, "type", dns.TypeToString[req.Question[0].Qtype],
			"rcode", dns.RcodeToString[m.Rcode], "answers", len(m.Answer))
	}
	_ = w.WriteMsg(m) // the client is gone: nothing to do
}

// Serve answers on pc (UDP) and l (TCP), either may be nil, until ctx is
// done; then it shuts both down and returns nil. A server that fails to
// run returns its error.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, l net.Listener) error {
	if pc == nil && l == nil {
		return errors.New("dnsserver: nothing to serve on")
	}
	var servers []*dns.Server
	if pc != nil {
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: s})
	}
	if l != nil {
		servers = append(servers, &dns.Server{Listener: l, Handler: s, ReadTimeout: 5 * time.Second})
	}
	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- srv.ActivateAndServe()
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("dnsserver: %w", err)
	}
	for _, srv := range servers {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.ShutdownContext(sctx) // a server that never started has nothing to stop
		cancel()
	}
	wg.Wait()
	return err
}

// ListenAndServe listens on addr ("host:port") over UDP and TCP and
// serves until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("dnsserver: %w", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		_ = pc.Close()
		return fmt.Errorf("dnsserver: %w", err)
	}
	return s.Serve(ctx, pc, l)
}
