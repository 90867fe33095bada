package ops

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// addJournal makes `node add` re-runnable after a crash: before it adds
// nodes to the state, add writes (and flocks) a small local file naming
// them. A later `node add` with the same --count on the same cluster that
// finds an unlocked journal (its writer died) resumes those nodes instead of
// adding new ones. A running add holds its lock, so concurrent adds never
// take each other's nodes.
type addJournal struct {
	path string
	f    *os.File
	// Count and Nodes are the file's content.
	Count int      `json:"count"`
	Nodes []string `json:"nodes"`
}

// JournalDir is where `node add` keeps its journals by default:
// $XDG_STATE_HOME/dynia/pending, else ~/.local/state/dynia/pending.
func JournalDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "dynia", "pending")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "dynia-pending")
	}
	return filepath.Join(home, ".local", "state", "dynia", "pending")
}

// journalPrefix scopes journals to one cluster in one state store.
func journalPrefix(stateURL, cluster string) string {
	h := sha256.Sum256([]byte(stateURL))
	return "add-" + cluster + "-" + hex.EncodeToString(h[:6]) + "-"
}

// resumeAdd returns the journal of an interrupted add of count nodes to
// cluster, locked by this process, or nil.
func resumeAdd(dir, stateURL, cluster string, count int) (*addJournal, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	prefix := journalPrefix(stateURL, cluster)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		j, err := lockJournal(filepath.Join(dir, e.Name()))
		if err != nil || j == nil {
			continue // held by a running add, or unreadable
		}
		if j.Count == count && len(j.Nodes) == count {
			return j, nil
		}
		j.release(false)
	}
	return nil, nil
}

func lockJournal(path string) (*addJournal, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, nil
	}
	j := &addJournal{path: path, f: f}
	if err := json.NewDecoder(f).Decode(j); err != nil {
		j.release(false)
		return nil, err
	}
	return j, nil
}

// newAddJournal creates and locks a journal for an add of count nodes.
func newAddJournal(dir, stateURL, cluster string, count int) (*addJournal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("add journal: %w", err)
	}
	f, err := os.CreateTemp(dir, journalPrefix(stateURL, cluster)+"*.json")
	if err != nil {
		return nil, fmt.Errorf("add journal: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("add journal: %w", err)
	}
	return &addJournal{path: f.Name(), f: f, Count: count}, nil
}

// record writes the node ids, before they are added to the state.
func (j *addJournal) record(nodes []string) error {
	j.Nodes = nodes
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := j.f.Truncate(0); err != nil {
		return err
	}
	if _, err := j.f.WriteAt(b, 0); err != nil {
		return err
	}
	return j.f.Sync()
}

// release unlocks the journal; done deletes it (the add finished).
func (j *addJournal) release(done bool) {
	if done {
		_ = os.Remove(j.path)
	}
	_ = j.f.Close() // closing drops the flock
}
