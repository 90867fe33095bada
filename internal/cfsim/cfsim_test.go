package cfsim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type env struct {
	Success    bool              `json:"success"`
	Errors     []json.RawMessage `json:"errors"`
	Messages   []json.RawMessage `json:"messages"`
	Result     json.RawMessage   `json:"result"`
	ResultInfo *resultInfo       `json:"result_info"`
}

// TestEnvelope drives the simulator with raw requests through the spec
// validator and checks statuses, error codes and the envelope's shape.
func TestEnvelope(t *testing.T) {
	sim := New(Options{})
	zid := sim.AddZone("example.test")
	sim.AddZone("other.test")
	token := sim.NewToken()
	sim.AddToken("readonly-token", false)
	ts := httptest.NewServer(sim)
	t.Cleanup(ts.Close)
	v, err := NewSpecValidator(SpecPath(), ts.URL+APIPrefix)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: v.Transport(nil)}
	recID := ""
	do := func(t *testing.T, method, path, tok, body string, invalid bool) (int, env) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, ts.URL+APIPrefix+strings.ReplaceAll(path, "{rec}", recID), rd)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if tok != "" {
			req.Header.Set("Authorization", tok)
		}
		c := hc
		if invalid {
			c = http.DefaultClient // the request breaks the spec on purpose
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var e env
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatalf("%s %s: not JSON: %v", method, path, err)
		}
		if e.Errors == nil || e.Messages == nil {
			t.Errorf("%s %s: errors/messages missing (must be arrays)", method, path)
		}
		return resp.StatusCode, e
	}
	bearer := "Bearer " + token
	create := `{"type":"A","name":"app.example.test","content":"10.0.0.1","ttl":60,"proxied":false,"comment":"dynia:cluster:demo"}`
	for _, tc := range []struct {
		name       string
		method     string
		path       string
		auth       string
		body       string
		wantStatus int
		wantCode   int // first error's code; 0 = success
		check      func(t *testing.T, e env)
		invalid    bool // the request itself breaks the spec (bad input)
	}{
		{"no auth", "GET", "/zones", "", "", 400, 9106, nil, false},
		{"malformed auth", "GET", "/zones", "Token abc", "", 400, 6003, nil, false},
		{"unknown token", "GET", "/zones", "Bearer nope", "", 401, 9109, nil, false},
		{"read-only token cannot write", "POST", "/zones/" + zid + "/dns_records", "Bearer readonly-token", create, 403, 10000, nil, false},
		{"zone by name", "GET", "/zones?name=example.test", bearer, "", 200, 0, func(t *testing.T, e env) {
			var zs []struct{ ID, Name string }
			_ = json.Unmarshal(e.Result, &zs)
			if len(zs) != 1 || zs[0].ID != zid || e.ResultInfo == nil || e.ResultInfo.TotalCount != 1 {
				t.Fatalf("zones = %+v info %+v", zs, e.ResultInfo)
			}
		}, false},
		{"unknown zone name: empty list", "GET", "/zones?name=nope.test", bearer, "", 200, 0, func(t *testing.T, e env) {
			if string(e.Result) != "[]" {
				t.Fatalf("result %s, want []", e.Result)
			}
		}, false},
		{"zones paginate", "GET", "/zones?per_page=5&page=1", bearer, "", 200, 0, func(t *testing.T, e env) {
			want := &resultInfo{Page: 1, PerPage: 5, Count: 2, TotalCount: 2, TotalPages: 1}
			if d := cmp.Diff(want, e.ResultInfo); d != "" {
				t.Fatalf("result_info (-want +got):\n%s", d)
			}
		}, false},
		{"unknown zone id", "GET", "/zones/0123456789abcdef0123456789abcdef/dns_records", bearer, "", 404, 7003, nil, false},
		{"create", "POST", "/zones/" + zid + "/dns_records", bearer, create, 200, 0, func(t *testing.T, e env) {
			var r struct{ ID, Name, Content, Comment string }
			_ = json.Unmarshal(e.Result, &r)
			if r.Name != "app.example.test" || r.Content != "10.0.0.1" || len(r.ID) != 32 {
				t.Fatalf("created %+v", r)
			}
			recID = r.ID
		}, false},
		{"identical record refused", "POST", "/zones/" + zid + "/dns_records", bearer, create, 400, 81058, nil, false},
		{"bad IPv4", "POST", "/zones/" + zid + "/dns_records", bearer, `{"type":"A","name":"x.example.test","content":"nope","ttl":60}`, 400, 9005, nil, false},
		{"bad TTL", "POST", "/zones/" + zid + "/dns_records", bearer, `{"type":"A","name":"x.example.test","content":"10.0.0.2","ttl":61000000}`, 400, 9021, nil, true},
		{"relative name lands in the zone", "POST", "/zones/" + zid + "/dns_records", bearer, `{"type":"A","name":"www","content":"10.0.0.3","ttl":1}`, 200, 0, func(t *testing.T, e env) {
			var r struct{ Name string }
			_ = json.Unmarshal(e.Result, &r)
			if r.Name != "www.example.test" {
				t.Fatalf("name %q", r.Name)
			}
		}, false},
		{"six TXT records", "POST", "/zones/" + zid + "/dns_records", bearer, `{"type":"TXT","name":"tz.example.test","content":"x","ttl":1}`, 200, 0, func(t *testing.T, e env) {
			for i := range 5 {
				body := `{"type":"TXT","name":"t` + string(rune('a'+i)) + `.example.test","content":"x","ttl":1}`
				if st, e := do(t, "POST", "/zones/"+zid+"/dns_records", bearer, body, false); st != 200 {
					t.Fatalf("TXT %d: %d %s", i, st, e.Errors)
				}
			}
		}, false},
		{"list by exact name and type", "GET", "/zones/" + zid + "/dns_records?type=A&name.exact=app.example.test", bearer, "", 200, 0, func(t *testing.T, e env) {
			if e.ResultInfo == nil || e.ResultInfo.Count != 1 || e.ResultInfo.TotalCount != 1 {
				t.Fatalf("result_info %+v", e.ResultInfo)
			}
		}, false},
		{"records paginate", "GET", "/zones/" + zid + "/dns_records?per_page=5&page=2", bearer, "", 200, 0, func(t *testing.T, e env) {
			want := &resultInfo{Page: 2, PerPage: 5, Count: 3, TotalCount: 8, TotalPages: 2}
			if d := cmp.Diff(want, e.ResultInfo); d != "" {
				t.Fatalf("result_info (-want +got):\n%s", d)
			}
		}, false},
		{"get", "GET", "/zones/" + zid + "/dns_records/{rec}", bearer, "", 200, 0, nil, false},
		{"patch content", "PATCH", "/zones/" + zid + "/dns_records/{rec}", bearer, `{"content":"10.0.0.9"}`, 200, 0, func(t *testing.T, e env) {
			var r struct {
				Content string
				TTL     int
				Comment string
			}
			_ = json.Unmarshal(e.Result, &r)
			if r.Content != "10.0.0.9" || r.TTL != 60 || r.Comment != "dynia:cluster:demo" {
				t.Fatalf("patched %+v: PATCH must keep other fields", r)
			}
		}, false},
		{"put overwrites", "PUT", "/zones/" + zid + "/dns_records/{rec}", bearer, `{"type":"A","name":"app.example.test","content":"10.0.0.8","ttl":120}`, 200, 0, func(t *testing.T, e env) {
			var r struct {
				Comment *string
			}
			_ = json.Unmarshal(e.Result, &r)
			if r.Comment != nil {
				t.Fatalf("PUT kept the comment %q", *r.Comment)
			}
		}, false},
		{"delete", "DELETE", "/zones/" + zid + "/dns_records/{rec}", bearer, "", 200, 0, nil, false},
		{"delete again", "DELETE", "/zones/" + zid + "/dns_records/{rec}", bearer, "", 404, 81044, nil, false},
		{"get deleted", "GET", "/zones/" + zid + "/dns_records/{rec}", bearer, "", 404, 81044, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, e := do(t, tc.method, tc.path, tc.auth, tc.body, tc.invalid)
			if status != tc.wantStatus {
				t.Fatalf("HTTP %d, want %d (%s)", status, tc.wantStatus, e.Errors)
			}
			if tc.wantCode == 0 {
				if !e.Success || len(e.Errors) != 0 {
					t.Fatalf("success %v errors %s", e.Success, e.Errors)
				}
			} else {
				var first struct{ Code int }
				if e.Success || len(e.Errors) == 0 || string(e.Result) != "null" {
					t.Fatalf("failure envelope: success %v errors %s result %s", e.Success, e.Errors, e.Result)
				}
				_ = json.Unmarshal(e.Errors[0], &first)
				if first.Code != tc.wantCode {
					t.Fatalf("error code %d, want %d (%s)", first.Code, tc.wantCode, e.Errors)
				}
			}
			if tc.check != nil {
				tc.check(t, e)
			}
		})
	}
	if err := v.Err(); err != nil {
		t.Fatalf("spec violations:\n%v", err)
	}
	if v.Checked() == 0 {
		t.Fatal("the validator checked nothing")
	}
	recs := sim.Records()
	if len(recs) != 7 || recs[0].Name != "ta.example.test" || recs[6].Name != "www.example.test" || recs[6].TTL != 1 {
		t.Fatalf("Records() = %+v, want six TXT records and www.example.test (ttl automatic), sorted", recs)
	}
}
