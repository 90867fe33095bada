package pull

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/dynia/dynia/internal/nodeconfig"
)

// LoadConfig reads pull.json for a running node. A file the strict decoder
// rejects only for keys it does not know (a typo) is still used, with
// those keys ignored: a rebooted node must keep serving rather than exit
// over "poll_intervall". warning then names the ignored keys and the
// caller reports it until the file is fixed. err is set only when no
// usable config can be read (missing file, corrupt JSON, a bad value, a
// required field missing).
func LoadConfig(path string) (cfg *nodeconfig.Config, warning string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read node config: %w", err)
	}
	cfg, strictErr := nodeconfig.Decode(b)
	if strictErr == nil {
		return cfg, "", nil
	}
	unknown := unknownKeys(b)
	if len(unknown) == 0 || nodeconfig.CheckDocument(b) != nil {
		return nil, "", strictErr // only unknown keys are forgiven
	}
	var lenient nodeconfig.Config
	if err := json.Unmarshal(b, &lenient); err != nil {
		return nil, "", strictErr
	}
	if err := lenient.Validate(); err != nil {
		return nil, "", fmt.Errorf("%w (and unknown %s)", err, fieldList(unknown))
	}
	return &lenient, fmt.Sprintf("config %s: unknown %s (ignored)", path, fieldList(unknown)), nil
}

func fieldList(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = fmt.Sprintf("%q", k)
	}
	if len(q) == 1 {
		return "field " + q[0]
	}
	return "fields " + strings.Join(q, ", ")
}

// unknownKeys lists the top-level keys of a JSON object that
// nodeconfig.Config has no field for (nil if b is not an object).
func unknownKeys(b []byte) []string {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	known := map[string]bool{}
	t := reflect.TypeFor[nodeconfig.Config]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		known[name] = true
	}
	var unknown []string
	for k := range m {
		// encoding/json matches keys case-insensitively; so does the check.
		if !known[k] && !knownFold(known, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	return unknown
}

func knownFold(known map[string]bool, k string) bool {
	for name := range known {
		if strings.EqualFold(name, k) {
			return true
		}
	}
	return false
}
