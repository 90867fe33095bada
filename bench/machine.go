package bench

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
)

// Machine is where a result was measured.
type Machine struct {
	CPU        string            `json:"cpu"`
	Cores      int               `json:"cores"`
	MemoryGiB  string            `json:"memory_gib"`
	Kernel     string            `json:"kernel"`
	OS         string            `json:"os"`
	LoadAvg    string            `json:"load_avg"` // at the start of the run: the machine is shared
	Versions   map[string]string `json:"versions"`
	GoVersion  string            `json:"go"`
	DyniaBuild string            `json:"dynia"`
}

// MachineInfo reads the machine and the versions of the programs the
// benchmarks run. Anything unreadable is left empty.
func MachineInfo(binDir string) Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Versions: map[string]string{}}
	m.CPU = firstMatch("/proc/cpuinfo", regexp.MustCompile(`^model name\s*:\s*(.+)$`))
	if kb := firstMatch("/proc/meminfo", regexp.MustCompile(`^MemTotal:\s*(\d+) kB`)); kb != "" {
		m.MemoryGiB = fnum(atof(kb)/1024/1024, "")
	}
	m.Kernel = readTrim("/proc/sys/kernel/osrelease")
	m.OS = strings.Trim(firstMatch("/etc/os-release", regexp.MustCompile(`^PRETTY_NAME=(.+)$`)), `"`)
	if v := readTrim("/etc/debian_version"); v != "" {
		m.OS += " (debian_version " + v + ")"
	}
	if f := strings.Fields(readTrim("/proc/loadavg")); len(f) >= 3 {
		m.LoadAvg = strings.Join(f[:3], " ")
	}
	for name, args := range map[string][]string{
		"haproxy":      {"haproxy", "-v"},
		"keepalived":   {"keepalived", "--version"},
		"wireguard-go": {"wireguard-go", "--version"},
		"dockerd":      {"dockerd", "--version"},
		"versitygw":    {"versitygw", "--version"},
		"pebble":       {"pebble", "-version"},
	} {
		m.Versions[name] = version(args...)
	}
	out, _ := exec.Command(filepath.Join(binDir, "dynia"), "version").CombinedOutput()
	m.DyniaBuild, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	return m
}

// version is the first line of a program's version output that names a
// version number.
func version(args ...string) string {
	out, _ := exec.Command(args[0], args[1:]...).CombinedOutput()
	re := regexp.MustCompile(`v?\d+\.\d+(\.\d+)?`)
	for _, line := range strings.Split(string(out), "\n") {
		if re.MatchString(line) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func firstMatch(path string, re *regexp.Regexp) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			return strings.TrimSpace(m[1])
		}
	}
	return ""
}
