package bench

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseAccessLine(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       s3Request
		ok         bool
	}{
		{"versitygw", `DYNIA272F985780A11B58 dynia-sandbox [29/November/2026:23:39:52 +0000] 198.19.123.5 DYNIA272F985780A11B58 MDY8BZX4EZB3QBZ3 s3_PutObject dynia/clusters/co/nodes/modest-magpie/status.json /dynia-sandbox/dynia/clusters/co/nodes/modest-magpie/status.json?x-id=PutObject 200 - 0 0 2 2 - aws-sdk-go-v2/1.48.0 - SigV4 - AuthHeader s3.us-east-1.amazonaws.com - arn:aws:s3:::/dynia-sandbox Yes`,
			s3Request{time.Date(2026, 11, 29, 23, 39, 52, 0, time.UTC), "198.19.123.5", "s3_PutObject", "dynia/clusters/co/nodes/modest-magpie/status.json"}, true},
		{"S3", `79a5 awsexamplebucket1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 79a5 3E57427F3EXAMPLE REST.GET.VERSIONING - "GET /awsexamplebucket1?versioning HTTP/1.1" 200 - 113 - 7 - "-" "S3Console/0.4" -`,
			s3Request{time.Date(2019, 2, 6, 0, 0, 38, 0, time.UTC), "192.0.2.3", "REST.GET.VERSIONING", "-"}, true},
		{"header", `log starts 2026-11-29 23:39:43.770809795 +0000 UTC m=+0.022431774`, s3Request{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseAccessLine(tc.line)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if !isPut("s3_PutObject") || !isPut("REST.PUT.OBJECT") || isPut("s3_GetObject") {
		t.Error("isPut")
	}
}
