package nodeconfig

import (
	"strings"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	c, err := Decode([]byte(`{"cluster":"demo","node_id":"misty-owl","state_url":"s3://b/p","poll_interval":"2s","supervise":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.PollInterval.Duration != 2*time.Second || !c.Supervise {
		t.Fatalf("decoded %+v", c)
	}
	tests := map[string]string{
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","poll_intervall":"2s"}`:                                     `unknown field "poll_intervall"`,
		`{"node_id":"x","state_url":"s3://b"}`:                                                                            "cluster is empty",
		`{"cluster":"demo","state_url":"s3://b"}`:                                                                         "node_id is empty",
		`{"cluster":"demo","node_id":"x"}`:                                                                                "state_url is empty",
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","poll_interval":2}`:                                         "duration must be a string",
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","poll_interval":"-1s"}`:                                     "negative",
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","haproxy_reload_command":[""]}`:                             `haproxy_reload_command [""] has no program`,
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","keepalived_reload_command":"systemctl reload keepalived"}`: "keepalived_reload_command",
	}
	for doc, want := range tests {
		if _, err := Decode([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%s) = %v, want an error containing %q", doc, err, want)
		}
	}
}
