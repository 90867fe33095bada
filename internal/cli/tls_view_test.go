package cli

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/report"
)

// TestTLSNodeViewJSON: `tls status -o json` prints each node's certificate
// as flat fields beside "node", the node report's names for them.
func TestTLSNodeViewJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	b, err := json.Marshal(TLSNodeView{Node: "brave-panda", TLSStatus: report.TLSStatus{
		Serial: "0a", Names: []string{"app.example.com"}, NotAfter: &at, Placeholder: true, Error: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"node":"brave-panda","serial":"0a","names":["app.example.com"],"not_after":"2026-11-30T08:00:00Z","placeholder":true,"error":"x"}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
}
