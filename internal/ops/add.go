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
	// JournalDir is where add journals live; "" is JournalDir().
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
	if o.JournalDir == "" {
		o.JournalDir = JournalDir()
	}
	a := &addition{d: d, o: o}
	err := Run(ctx, d.Report,
		Step{"", func(ctx context.Context) (string, error) { return "", CheckCloud(ctx, d.Cloud, o.Name) }},
		Step{"", a.resume},
	)
	if err != nil {
		return nil, nil, err
	}
	name := "" // a resumed add names its nodes in a note, not a step
	if a.added == nil {
		name = fmt.Sprintf("add %d node(s) to the state", o.Count)
	}
	err = Run(ctx, d.Report,
		Step{name, a.name},
		Step{"", a.provision},
	)
	if a.j != nil {
		a.j.release(err == nil)
	}
	if err != nil {
		return nil, a.added, err
	}
	return a.st, a.added, nil
}

// addition is one AddNodes run.
type addition struct {
	d     Deps
	o     AddOptions
	j     *addJournal
	added []string // the nodes this add owns (a resumed add's, once known)
	st    *cluster.State
}

// resume finds the journal of an interrupted add of as many nodes to the
// cluster (not finished meanwhile, e.g. by repair-ha), or starts a new one.
func (a *addition) resume(ctx context.Context) (string, error) {
	j, err := resumeAdd(a.o.JournalDir, a.d.Boot.StateURL, a.o.Name, a.o.Count)
	if err != nil {
		return "", err
	}
	if j != nil && !unfinished(ctx, a.d.Store, a.o.Name, j.Nodes) {
		j.release(true) // finished meanwhile: nothing to resume
		j = nil
	}
	if j != nil {
		a.j, a.added = j, j.Nodes
		a.d.Report.Info("resuming an interrupted `node add --count %d`: nodes %v", a.o.Count, a.added)
		return "", nil
	}
	a.j, err = newAddJournal(a.o.JournalDir, a.d.Boot.StateURL, a.o.Name, a.o.Count)
	return "", err
}

// name writes the nodes into the state: a resumed add's journaled ids the
// crashed run never wrote (the rest are there already), else new ones.
func (a *addition) name(ctx context.Context) (string, error) {
	if a.added != nil {
		_, err := a.d.Store.Update(ctx, a.o.Name, func(s *cluster.State) (*cluster.State, error) {
			return cluster.AddNamedNodes(s, a.added, time.Now())
		})
		return "", err
	}
	var err error
	a.added, err = addToState(ctx, a.d, a.o, a.j)
	return fmt.Sprint(a.added), err
}

func (a *addition) provision(ctx context.Context) (string, error) {
	var err error
	if a.st, err = ProvisionNodes(ctx, a.d, a.o.Name, a.added); err != nil {
		return "", fmt.Errorf("%w (nodes %v are in the state; re-run the same command, or `dynia node repair-ha --name %s --force`, to finish them)", err, a.added, a.o.Name)
	}
	return "", nil
}

// addToState names o.Count new nodes in the state, journaling their ids
// in j before the write that names them.
func addToState(ctx context.Context, d Deps, o AddOptions, j *addJournal) ([]string, error) {
	var added []string
	_, err := d.Store.Update(ctx, o.Name, func(s *cluster.State) (*cluster.State, error) {
		next, ids, err := cluster.AddNodes(s, o.Count, cluster.NewNamer(0), time.Now())
		if err != nil {
			return nil, err
		}
		// Journal the ids before the state names them, so a crash after
		// the write still knows which nodes this add owns.
		if err := j.record(ids); err != nil {
			return nil, fmt.Errorf("add journal: %w", err)
		}
		added = ids
		return next, nil
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
