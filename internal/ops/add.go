package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/dynia/dynia/internal/cluster"
)

// AddOptions are `node add`'s inputs.
type AddOptions struct {
	Name  string
	Count int
	// JournalDir is where add journals live (JournalDir by default).
	JournalDir string
}

// AddNodes adds o.Count nodes: ids and priorities by compare-and-swap
// first, droplets next (tagged with their ids, ProvisionNodes). Before the
// ids reach the state they are journaled in a locked local file, so a
// re-run of the same add after a crash resumes those nodes instead of
// adding others. The DO token is checked with a read before the first
// write: a refused token leaves the state as it was. It returns the state
// at the end and the ids added.
func AddNodes(ctx context.Context, d Deps, o AddOptions) (*cluster.State, []string, error) {
	if err := CheckCloud(ctx, d.Cloud, o.Name); err != nil {
		return nil, nil, err
	}
	stateURL := d.Boot.StateURL
	j, err := resumeAdd(o.JournalDir, stateURL, o.Name, o.Count)
	if err != nil {
		return nil, nil, err
	}
	if j != nil && !unfinished(ctx, d.Store, o.Name, j.Nodes) {
		j.release(true) // finished meanwhile (repair-ha): nothing to resume
		j = nil
	}
	var added []string
	if j != nil {
		added = j.Nodes
		d.Report.Info("resuming an interrupted `node add --count %d`: nodes %v", o.Count, added)
		// Ids the crashed run journaled but never wrote to the state are
		// added now; the rest are already there.
		if _, err := d.Store.Update(ctx, o.Name, func(s *cluster.State) (*cluster.State, error) {
			return cluster.AddNamedNodes(s, added, time.Now())
		}); err != nil {
			j.release(false)
			return nil, nil, err
		}
	} else {
		if j, err = newAddJournal(o.JournalDir, stateURL, o.Name, o.Count); err != nil {
			return nil, nil, err
		}
		if added, err = addToState(ctx, d, o, j); err != nil {
			j.release(false)
			return nil, nil, err
		}
	}
	st, err := ProvisionNodes(ctx, d, o.Name, added)
	if err != nil {
		j.release(false)
		return nil, added, fmt.Errorf("%w (nodes %v are in the state; re-run the same command, or `dynia node repair-ha --name %s --force`, to finish them)", err, added, o.Name)
	}
	j.release(true)
	return st, added, nil
}

// addToState names o.Count new nodes in the state, journaling their ids
// in j before the write that names them.
func addToState(ctx context.Context, d Deps, o AddOptions, j *addJournal) ([]string, error) {
	var added []string
	err := d.Report.Step(fmt.Sprintf("add %d node(s) to the state", o.Count), func() (string, error) {
		_, err := d.Store.Update(ctx, o.Name, func(s *cluster.State) (*cluster.State, error) {
			next, ids, err := cluster.AddNodes(s, o.Count, cluster.NewNamer(0), time.Now())
			if err != nil {
				return nil, err
			}
			// Journal the ids before the state names them, so a crash
			// after the write still knows which nodes this add owns.
			if err := j.record(ids); err != nil {
				return nil, fmt.Errorf("add journal: %w", err)
			}
			added = ids
			return next, nil
		})
		return fmt.Sprint(added), err
	})
	return added, err
}

// unfinished reports whether any of the nodes is missing from the state or
// still provisioning: what a resumed add has left to do.
func unfinished(ctx context.Context, store *cluster.Store, name string, ids []string) bool {
	st, _, err := store.Load(ctx, name)
	if err != nil {
		return true // let the resume path report the error
	}
	for _, id := range ids {
		if n := st.Node(id); n == nil || n.Lifecycle == cluster.Provisioning {
			return true
		}
	}
	return false
}
