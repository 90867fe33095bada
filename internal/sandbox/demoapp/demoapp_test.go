package demoapp

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"testing"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	h := Handler("misty-owl")
	for _, tc := range []struct {
		path string
		want string
	}{
		{"/", "misty-owl\n"},
		{"/healthz", "ok\n"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != 200 {
			t.Errorf("GET %s: status %d", tc.path, rec.Code)
		}
		if b, _ := io.ReadAll(rec.Body); string(b) != tc.want {
			t.Errorf("GET %s = %q, want %q", tc.path, b, tc.want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/?json", nil))
	var got map[string]string
	if err := json.NewDecoder(rec.Body).Decode(&got); err != nil || got["node_id"] != "misty-owl" {
		t.Errorf("GET /?json = %v, %v", got, err)
	}
}
