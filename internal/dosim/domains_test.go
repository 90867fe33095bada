package dosim

import (
	"testing"

	"github.com/digitalocean/godo"
	"github.com/google/go-cmp/cmp"
)

// TestDomainRecords: the snapshot the sandbox's DNS server answers from
// holds what the API created, with names relative as DO stores them, and
// reflects edits and deletes; AddDomain is idempotent and validated.
func TestDomainRecords(t *testing.T) {
	s, hs, _ := newSim(t, Options{})
	c := godoClient(t, hs, "t")
	ctx := t.Context()

	if err := s.AddDomain("Sandbox.Test."); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDomain("sandbox.test"); err != nil {
		t.Fatalf("AddDomain of an existing domain: %v", err)
	}
	for _, bad := range []string{"", "localhost", "."} {
		if err := s.AddDomain(bad); err == nil {
			t.Errorf("AddDomain(%q) = nil, want an error", bad)
		}
	}
	if _, _, err := c.Domains.Get(ctx, "sandbox.test"); err != nil {
		t.Fatalf("the added domain through the API: %v", err)
	}
	if _, _, err := c.Domains.Create(ctx, &godo.DomainCreateRequest{Name: "example.com", IPAddress: "198.51.100.9"}); err != nil {
		t.Fatal(err)
	}
	www, _, err := c.Domains.CreateRecord(ctx, "example.com", &godo.DomainRecordEditRequest{Type: "A", Name: "www", Data: "198.51.100.10", TTL: 60})
	if err != nil {
		t.Fatal(err)
	}
	// A fully qualified name is stored relative.
	app, _, err := c.Domains.CreateRecord(ctx, "sandbox.test", &godo.DomainRecordEditRequest{Type: "A", Name: "app.eu.sandbox.test", Data: "198.51.100.11", TTL: 120})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Domains.EditRecord(ctx, "example.com", www.ID, &godo.DomainRecordEditRequest{Type: "A", Data: "198.51.100.12"}); err != nil {
		t.Fatal(err)
	}

	type rec struct{ FQDN, Type, Name, Data string }
	var got []rec
	var ids []int
	for _, r := range s.DomainRecords() {
		got = append(got, rec{r.FQDN(), r.Type, r.Name, r.Data})
		ids = append(ids, r.ID)
	}
	ns := func(fqdn, n string) rec { return rec{fqdn, "NS", "@", "ns" + n + ".digitalocean.com"} }
	want := []rec{
		ns("example.com", "1"), ns("example.com", "2"), ns("example.com", "3"),
		{"example.com", "SOA", "@", "1800"},
		{"example.com", "A", "@", "198.51.100.9"},
		{"www.example.com", "A", "www", "198.51.100.12"},
		ns("sandbox.test", "1"), ns("sandbox.test", "2"), ns("sandbox.test", "3"),
		{"sandbox.test", "SOA", "@", "1800"},
		{"app.eu.sandbox.test", "A", "app.eu", "198.51.100.11"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("DomainRecords (-want +got):\n%s", diff)
	}
	for _, r := range s.DomainRecords() {
		if r.ID == app.ID && r.TTL != 120 {
			t.Errorf("record %d TTL %d, want 120", r.ID, r.TTL)
		}
	}
	if len(ids) != len(want) || ids[len(ids)-1] != app.ID {
		t.Errorf("ids %v: want creation order within a domain, %d last", ids, app.ID)
	}

	// Deleted records and domains leave the snapshot.
	if _, err := c.Domains.DeleteRecord(ctx, "sandbox.test", app.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Domains.Delete(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	for _, r := range s.DomainRecords() {
		if r.Domain != "sandbox.test" || r.Type == "A" {
			t.Errorf("record left after delete: %+v", r)
		}
	}
}
