package container

import (
	"context"
	"fmt"
	"sort"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/client"
)

// GCResult says what GC removed.
type GCResult struct {
	Containers []string // names of the removed containers
	Images     []string // removed references, repo@sha256:…
}

// GC removes every dynia container (any cluster) that is not running,
// restarting or paused, then every image reference "<repo>@<digest>" that
// no container uses, whose digest is not in keep, and whose repository is
// dynia's (named by keep or by a dynia container's label). Images someone
// tagged, and repositories dynia never ran, are left alone: dockerd may
// hold images that are not dynia's. keep holds manifest digests,
// "sha256:<hex>" or "<repo>@sha256:<hex>" (the current and the previous
// release, so a rollback needs no pull).
//
// A stopped release is not kept: a rollback starts a new container from
// the kept image. Get a failed release's logs (Logs, UnhealthyError)
// before GC.
func (r *Runtime) GC(ctx context.Context, keep []string) (GCResult, error) {
	var res GCResult
	if err := r.ready(ctx); err != nil {
		return res, err
	}
	keepDigests := map[string]bool{}
	repos := map[string]bool{}
	for _, k := range keep {
		if strings.HasPrefix(k, "sha256:") {
			keepDigests[k] = true
			continue
		}
		dr, err := ParseDigestRef(k)
		if err != nil {
			return res, fmt.Errorf("gc: keep: %w", err)
		}
		keepDigests[dr.Digest] = true
		repos[dr.Repo] = true
	}

	list, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return res, fmt.Errorf("gc: list containers: %w", err)
	}
	inUse := map[string]bool{} // image IDs of the containers that stay
	for _, c := range list.Items {
		m, ours, _ := ParseLabels(c.Labels)
		if ours && m.Image != "" {
			if dr, err := ParseDigestRef(m.Image); err == nil {
				repos[dr.Repo] = true
			}
		}
		switch {
		case !ours, c.State == "running", c.State == "restarting", c.State == "paused", c.State == "removing":
			inUse[c.ImageID] = true
			continue
		}
		name := c.ID
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		if _, err := r.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			// Started again meanwhile (by hand): it stays, with its image.
			r.log.Warn("gc: remove container", "container", name, "err", err)
			inUse[c.ImageID] = true
			continue
		}
		r.log.Info("gc: removed container", "container", name)
		res.Containers = append(res.Containers, name)
	}

	images, err := r.cli.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return res, fmt.Errorf("gc: list images: %w", err)
	}
	for _, img := range images.Items {
		if inUse[img.ID] || len(img.RepoTags) > 0 {
			continue
		}
		for _, rd := range img.RepoDigests {
			named, err := reference.ParseNormalizedNamed(rd)
			if err != nil {
				continue
			}
			dg, ok := named.(reference.Digested)
			if !ok || !repos[named.Name()] || keepDigests[dg.Digest().String()] {
				continue
			}
			if _, err := r.cli.ImageRemove(ctx, rd, client.ImageRemoveOptions{PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
				r.log.Warn("gc: remove image", "image", rd, "err", err)
				continue
			}
			r.log.Info("gc: removed image", "image", rd)
			res.Images = append(res.Images, rd)
		}
	}
	sort.Strings(res.Containers)
	sort.Strings(res.Images)
	return res, nil
}
