package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/signing"
)

// SnapshotPrefix is the name prefix of node images built by packer/.
const SnapshotPrefix = "dynia-node-"

// BootstrapImage is the stock image --bootstrap droplets start from.
const BootstrapImage = "debian-12-x64"

// resourceName names the firewall of a cluster.
func resourceName(cluster string) string { return "dynia-" + cluster }

// vpcName names the cluster's VPC; DO wants VPC names unique per account,
// so the region is part of it.
func vpcName(cluster, region string) string { return "dynia-" + cluster + "-" + region }

// nodeTags are set at droplet creation, so a crash right after the create
// still leaves a droplet that re-running the command finds and adopts.
func nodeTags(clusterName, nodeID string) []string {
	return []string{"dynia", cloud.ClusterTag(clusterName), cloud.NodeTag(nodeID)}
}

// nodeSecrets are what droplets need to read the state and move the RIP.
type nodeSecrets struct {
	spacesID, spacesSecret string
	doToken                string
}

// NodeTokenScopes are the scopes of a least-privilege node token: DO grants
// reserved_ip:update only together with these reads
// (https://docs.digitalocean.com/reference/api/scopes/).
var NodeTokenScopes = []string{"reserved_ip:update", "reserved_ip:read", "droplet:read", "regions:read", "sizes:read", "actions:read", "image:read"}

// nodeTokenHint says, on one line, how to give nodes a token of their own.
var nodeTokenHint = "make a custom-scoped DigitalOcean token with " + strings.Join(NodeTokenScopes, " ") +
	" (choosing reserved_ip:update adds the reads) and give it with --node-token-file FILE (mode 0600) or node_token_file in the context," +
	" or pass --allow-operator-token to give droplets your own token"

// loadNodeSecrets returns the DO token droplets get: --node-token-file
// (this run's), else the context's node_token_file. Without one, droplets
// get the CLI's own token only when that is allowed
// (--allow-operator-token, or allow_operator_token in the context), with a
// warning; otherwise it is bad input (exit 2), reported before any API
// call. A node token file must be 0600 and must not hold the CLI's own
// token. The file is read once per run: the first load (while the command
// checks its input) is kept, and prepareBoot's load returns it. The Spaces
// key comes from prepareBoot.
func (f *Factory) loadNodeSecrets(p *Progress) (nodeSecrets, error) {
	f.nodeSecretsMu.Lock()
	defer f.nodeSecretsMu.Unlock()
	if f.nodeSecrets != nil {
		return *f.nodeSecrets, nil
	}
	s, err := f.readNodeSecrets(p)
	if err != nil {
		return s, err
	}
	f.nodeSecrets = &s
	return s, nil
}

// readNodeSecrets is loadNodeSecrets' read of the configured token.
func (f *Factory) readNodeSecrets(p *Progress) (nodeSecrets, error) {
	var s nodeSecrets
	_, c, err := f.Config()
	if err != nil {
		return s, err
	}
	flag := "--node-token-file"
	tokenFile := f.nodeTokenFile
	if tokenFile == "" && c.NodeTokenFile != "" {
		tokenFile, flag = c.NodeTokenFile, f.contextKey("node_token_file")
	}
	allow := f.allowOperatorToken || c.AllowOperatorToken
	if tokenFile == "" {
		if !allow {
			return s, usagef("--node-token-file: not set: droplets would get your own DigitalOcean token, which anything on them can read; %s", nodeTokenHint)
		}
		tok, err := f.Token()
		if err != nil {
			return s, err
		}
		s.doToken = tok
		p.Info("warning: droplets get your own DigitalOcean token (--allow-operator-token): anything on a droplet can read it; a node token with only %s is safer", strings.Join(NodeTokenScopes, " "))
		return s, nil
	}
	if err := checkPrivateFile(flag, tokenFile); err != nil {
		return s, err
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		return s, usagef("%s %q: %v", flag, tokenFile, errors.Unwrap(err))
	}
	s.doToken = strings.Trim(strings.TrimSpace(string(b)), "'\"")
	if s.doToken == "" {
		return s, usagef("%s %q: empty; %s", flag, tokenFile, nodeTokenHint)
	}
	if op, err := f.Token(); err == nil && op == s.doToken && !allow {
		return s, usagef("%s %q: holds your own DigitalOcean token, not a node token; %s", flag, tokenFile, nodeTokenHint)
	}
	return s, nil
}

// checkNodeToken asks DigitalOcean whether the node token can make the
// reads dynia-pull needs (cloud.CheckNodeToken: two GETs). A token DO
// refuses (401) or one lacking a scope (403) is bad input, exit 2, before
// anything is written. One that can also read the account (a scope no node
// token needs: a full-access token, most likely) gets a warning. The CLI's
// own token (allowed) is not checked.
func (f *Factory) checkNodeToken(ctx context.Context, s nodeSecrets, p *Progress) error {
	if f.CloudOverride != nil {
		return nil
	}
	op, err := f.Token()
	if err != nil || op == s.doToken {
		return err
	}
	_, c, err := f.Config()
	if err != nil {
		return err
	}
	cl, err := f.cloudWith(s.doToken, c)
	if err != nil {
		return usagef("--node-token-file: %v", err)
	}
	defer cl.CloseIdleConnections()
	err = cl.CheckNodeToken(ctx)
	var ae *cloud.APIError
	switch {
	case err == nil:
		if _, err := cl.Account(ctx); err == nil {
			p.Info("warning: the node token can read your account, which nodes never need: is it a full-access token? A node token needs only %s", strings.Join(NodeTokenScopes, " "))
		}
		return nil
	case errors.As(err, &ae) && ae.StatusCode == http.StatusUnauthorized:
		return usagef("--node-token-file: DigitalOcean refuses the node token (401 Unauthorized: wrong, expired or revoked); %s", nodeTokenHint)
	case errors.As(err, &ae) && ae.StatusCode == http.StatusForbidden:
		return usagef("--node-token-file: the node token lacks a scope nodes need (403 on %s); %s", ae.Op, nodeTokenHint)
	}
	return fmt.Errorf("check the node token: %w", err)
}

// nodeBoot is what every new droplet's user-data carries.
type nodeBoot struct {
	secrets nodeSecrets
	// clusterKey is the cluster's age identity ("" for a cluster made
	// before cluster keys).
	clusterKey string
	// Bootstrap clusters (stock image): where droplets fetch dynia-pull.
	bootstrap        bool
	pullURL, pullSHA string
}

// isBootstrapImage: a distribution slug means no dynia snapshot, so the
// droplet installs everything at first boot.
func isBootstrapImage(image string) bool { return strings.HasSuffix(image, "-x64") }

// pullBinaryKey is where the CLI uploads dynia-pull for bootstrap droplets.
func pullBinaryKey(version string) string {
	return "bin/dynia-pull-" + version + "-linux-" + runtime.GOARCH
}

// pullBinaryPath finds the dynia-pull to upload: $DYNIA_PULL_BINARY, next
// to this dynia, else on PATH.
func (f *Factory) pullBinaryPath() (string, error) {
	if p := f.Getenv("DYNIA_PULL_BINARY"); p != "" {
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "dynia-pull")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("dynia-pull")
	if err != nil {
		return "", fmt.Errorf("--bootstrap needs the dynia-pull binary next to dynia or on PATH (make build puts both in bin/)")
	}
	return p, nil
}

// prepareBoot loads the node secrets — the node token (as this run first
// loaded it, loadNodeSecrets), the cluster key and
// the nodes' own Spaces key (minted at the first droplet, nodekey.go) —
// and, for a bootstrap cluster, uploads dynia-pull to the bucket (only when
// its content changed: Spaces limits writes per object) and presigns a GET
// for the droplets. A dry run (cl nil) mints nothing and calls nothing.
func (f *Factory) prepareBoot(ctx context.Context, store *cluster.Store, cl *cloud.Client, st *cluster.State, p *Progress, dryRun bool) (nodeBoot, error) {
	secrets, err := f.loadNodeSecrets(p)
	if err != nil {
		return nodeBoot{}, err
	}
	boot := nodeBoot{secrets: secrets, bootstrap: isBootstrapImage(st.Image)}
	if dryRun {
		boot.secrets.spacesID, boot.secrets.spacesSecret, err = f.dryRunNodeSpacesKey()
		if err != nil {
			return boot, err
		}
	} else {
		if boot.clusterKey, _, err = f.clusterKey(st, false); err != nil {
			return boot, err
		}
		if boot.secrets.spacesID, boot.secrets.spacesSecret, err = f.nodeSpacesKey(ctx, store, cl, st, boot.clusterKey, p); err != nil {
			return boot, err
		}
	}
	if !boot.bootstrap {
		return boot, nil
	}
	path, err := f.pullBinaryPath()
	if err != nil {
		return boot, err
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return boot, err
	}
	sum := sha256.Sum256(bin)
	boot.pullSHA = hex.EncodeToString(sum[:])
	if dryRun {
		boot.pullURL = "https://presigned-url.invalid/" + pullBinaryKey(Version)
		return boot, nil
	}
	key := pullBinaryKey(Version)
	md := md5.Sum(bin)
	etag := `"` + hex.EncodeToString(md[:]) + `"`
	err = p.Step("upload dynia-pull for first boot", func() (string, error) {
		infos, err := store.B.List(ctx, key)
		if err != nil {
			return "", err
		}
		for _, in := range infos {
			if in.Key == key && in.ETag == etag {
				return key + " (unchanged)", nil
			}
		}
		_, err = store.B.Put(ctx, key, bin, bucket.Cond{})
		return fmt.Sprintf("%s (%d bytes)", key, len(bin)), err
	})
	if err != nil {
		return boot, err
	}
	ps, ok := store.B.(bucket.Presigner)
	if !ok {
		return boot, fmt.Errorf("--bootstrap needs an S3/Spaces state store (droplets download dynia-pull through a presigned URL); %s cannot presign", store.B)
	}
	// Droplets fetch it within minutes of creation; a day is generous.
	boot.pullURL, err = ps.PresignGet(ctx, key, 24*time.Hour)
	return boot, err
}

// userData renders one node's cloud-init: with the state's public key
// (the node applies only states it signed) and the node's report key
// (nil: a node that writes unsigned reports, as before signing).
func (f *Factory) userData(st *cluster.State, nodeID string, boot nodeBoot, reportKey ed25519.PrivateKey) ([]byte, error) {
	stateURL, err := f.StateURL()
	if err != nil {
		return nil, err
	}
	_, c, err := f.Config()
	if err != nil {
		return nil, err
	}
	// Nodes read the state where the CLI writes it: the same endpoint,
	// region and addressing (flag, environment or context), unless the
	// context names the endpoint as droplets see it.
	bo, err := f.BucketOptions()
	if err != nil {
		return nil, err
	}
	endpoint := bo.Endpoint
	if c.NodeSpacesEndpoint != "" {
		endpoint = c.NodeSpacesEndpoint
	}
	p := cloudinit.Params{
		Mode:     cloudinit.Snapshot,
		Cluster:  st.Name,
		NodeID:   nodeID,
		Hostname: cluster.Hostname(st.Name, nodeID),
		Node: nodeconfig.Config{
			Cluster:     st.Name,
			NodeID:      nodeID,
			StateURL:    stateURL,
			Endpoint:    endpoint,
			Region:      bo.Region,
			PathStyle:   bo.PathStyle,
			DOAPIURL:    c.NodeAPIURL,
			MetadataURL: c.MetadataURL,
		},
		SpacesAccessKeyID:     boot.secrets.spacesID,
		SpacesSecretAccessKey: boot.secrets.spacesSecret,
		DOToken:               boot.secrets.doToken,
		ClusterKey:            boot.clusterKey,
		StatePublicKey:        st.SigningKey,
	}
	if reportKey != nil {
		p.ReportKey = signing.PrivateKeyString(reportKey)
	}
	if st.SigningKey != "" {
		// The droplet will never apply a state older than this one: an
		// old signed state put back while it boots is refused (replay).
		p.Node.MinStateGeneration = st.Generation
	}
	// A node of its own image (a replacement's snapshot) boots from it
	// even in a cluster made with --bootstrap.
	image := st.Image
	if n := st.Node(nodeID); n != nil {
		image = n.ImageOr(st.Image)
	}
	p.Image = image
	if boot.bootstrap && isBootstrapImage(image) {
		p.Mode = cloudinit.Bootstrap
		p.Distro = image
		p.PullBinaryURL, p.PullBinarySHA256 = boot.pullURL, boot.pullSHA
	}
	return cloudinit.Render(p)
}

// checkCatalog validates --region and --size against the API (read-only
// calls, before anything is created).
func checkCatalog(ctx context.Context, cl *cloud.Client, region, size string) error {
	regions, err := cl.ListRegions(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, r := range regions {
		if r.Slug == region {
			found = true
		}
	}
	if !found {
		return usagef("--region %q: not a DigitalOcean region", region)
	}
	sizes, err := cl.ListSizes(ctx)
	if err != nil {
		return err
	}
	for _, s := range sizes {
		if s.Slug == size {
			return nil
		}
	}
	return usagef("--size %q: not a DigitalOcean droplet size", size)
}

// resolveImage picks the droplet image: --image as given (an id, or a
// snapshot name looked up), else the newest dynia-node-* snapshot.
func resolveImage(ctx context.Context, cl *cloud.Client, image, region string, bootstrap bool) (string, error) {
	switch {
	case bootstrap:
		return BootstrapImage, nil
	case image == "":
		img, err := cl.FindSnapshot(ctx, SnapshotPrefix, region)
		if err != nil {
			return "", err
		}
		return strconv.Itoa(img.ID), nil
	case isDigits(image) || strings.HasSuffix(image, "-x64"):
		return image, nil
	default:
		img, err := cl.FindSnapshot(ctx, image, region)
		if err != nil {
			return "", err
		}
		return strconv.Itoa(img.ID), nil
	}
}

func isDigits(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// provisionNodes makes sure the given provisioning nodes (all of them when
// only is nil) have a droplet, adopting one tagged with the node's id if a
// previous run created it, then waits for the droplets and records their
// addresses (lifecycle ready). Safe to re-run. A command provisions only
// the nodes it added, so concurrent adds never create for each other.
func provisionNodes(ctx context.Context, f *Factory, store *cluster.Store, cl *cloud.Client, name string, only []string, p *Progress) (*cluster.State, error) {
	st, _, err := store.Load(ctx, name)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, id := range only {
		want[id] = true
	}
	var pending []cluster.Node
	for _, n := range st.Nodes {
		if n.Lifecycle == cluster.Provisioning && (only == nil || want[n.ID]) {
			pending = append(pending, n)
		}
	}
	if len(pending) == 0 {
		return st, nil
	}
	// Adopt droplets a crashed run created (found by their node tag).
	dropletOf := map[string]int{}
	var toMake []cluster.Node
	adopted := 0
	for _, n := range pending {
		ds, err := cl.ListDropletsByTag(ctx, cloud.NodeTag(n.ID))
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if !hasTag(d.Tags, cloud.ClusterTag(name)) {
				continue
			}
			if f.stuck(d) {
				// An earlier run's droplet that never became active:
				// waiting for it again would never end.
				if err := cl.DeleteDroplet(ctx, d.ID); err != nil {
					return nil, err
				}
				p.Info("droplet %d (%s) is still new %v after its creation: it never became active; deleted, creating another",
					d.ID, d.Name, time.Since(d.CreatedAt).Round(time.Second))
				continue
			}
			dropletOf[n.ID] = d.ID
			adopted++
		}
		if dropletOf[n.ID] == 0 {
			toMake = append(toMake, n)
		}
	}
	// Each new droplet gets its own report key: the public half goes into
	// the state before the droplet exists (a crash after the create adopts
	// a droplet whose key the state already names), the private half only
	// into that droplet's user-data. A node whose droplet a crashed run
	// never created gets a new pair: the old private half is gone.
	reportKeys := map[string]ed25519.PrivateKey{}
	if len(toMake) > 0 {
		pubs := map[string]string{}
		for _, n := range toMake {
			k, err := signing.NewKey()
			if err != nil {
				return nil, err
			}
			reportKeys[n.ID], pubs[n.ID] = k, signing.PublicKeyString(signing.Public(k))
		}
		// This write is signed like every other; for a cluster made
		// before state signing it is the first signed one.
		if st, err = store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
			return cluster.SetReportKeys(s, pubs)
		}); err != nil {
			return nil, err
		}
	}
	boot, err := f.prepareBoot(ctx, store, cl, st, p, false)
	if err != nil {
		return nil, err
	}
	var toCreate []cloud.DropletSpec
	var createdFor []string
	err = p.Step(fmt.Sprintf("droplets for %s", ids(pending)), func() (string, error) {
		for _, n := range toMake {
			ud, err := f.userData(st, n.ID, boot, reportKeys[n.ID])
			if err != nil {
				return "", err
			}
			toCreate = append(toCreate, cloud.DropletSpec{
				Name: cluster.Hostname(name, n.ID), Region: st.Region, Size: st.Size, Image: n.ImageOr(st.Image),
				UserData: string(ud), VPCUUID: st.VPC.ID, Tags: nodeTags(name, n.ID), Monitoring: true,
			})
			createdFor = append(createdFor, n.ID)
		}
		created, err := cl.CreateDroplets(ctx, toCreate)
		for _, d := range created {
			for i, spec := range toCreate {
				if spec.Name == d.Name {
					dropletOf[createdFor[i]] = d.ID
				}
			}
		}
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d created, %d adopted", len(created), adopted), nil
	})
	// Record droplet ids even after a partial failure: the next run adopts
	// by tag anyway, but the state should say what exists.
	for id, did := range dropletOf {
		if _, uerr := store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
			return cluster.SetDroplet(s, id, did)
		}); uerr != nil && err == nil {
			err = uerr
		}
	}
	if err != nil {
		return nil, err
	}
	var idsToWait []int
	for _, n := range pending {
		idsToWait = append(idsToWait, dropletOf[n.ID])
	}
	var droplets []cloud.Droplet
	if err := p.Step("droplets active", func() (string, error) {
		droplets, err = cl.WaitActive(ctx, idsToWait)
		return "", err
	}); err != nil {
		if ctx.Err() != nil {
			return nil, f.dropStuck(ctx, store, cl, name, pending, dropletOf, err)
		}
		return nil, err
	}
	return store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
		changed := false
		for _, d := range droplets {
			for _, n := range pending {
				if dropletOf[n.ID] != d.ID {
					continue
				}
				next, err := cluster.SetNodeNetwork(s, n.ID, d.ID, d.PublicIP, d.PrivateIP)
				if errors.Is(err, cluster.ErrNoChange) {
					continue
				}
				if err != nil {
					return nil, err
				}
				s, changed = next, true
			}
		}
		if !changed {
			return nil, cluster.ErrNoChange
		}
		return s, nil
	})
}

func ids(nodes []cluster.Node) string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	return strings.Join(out, ", ")
}

func hasTag(tags []string, t string) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

// stuckDropletAge: a droplet still "new" this long after its creation never
// becomes active. DigitalOcean's droplets are usually active within a
// minute or two ([L], no documented bound); --timeout is 10 minutes.
const stuckDropletAge = 10 * time.Minute

// stuck says whether d is a droplet that never became active.
func (f *Factory) stuck(d cloud.Droplet) bool {
	age := f.StuckAfter
	if age <= 0 {
		age = stuckDropletAge
	}
	return d.Status == "new" && !d.CreatedAt.IsZero() && time.Since(d.CreatedAt) >= age
}

// dropStuck runs when the command's time ran out waiting for droplets
// (ctx is done): every droplet of pending still "new" and old enough to be
// stuck is deleted and forgotten in the state (its node stays
// provisioning), so a re-run creates a new one instead of waiting for it
// again; a younger one is left for the re-run to wait for. The returned
// error names each, and wraps err.
func (f *Factory) dropStuck(ctx context.Context, store *cluster.Store, cl *cloud.Client, name string, pending []cluster.Node, dropletOf map[string]int, err error) error {
	// The command's own context has ended: the clean-up gets its own.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	var notes []string
	for _, n := range pending {
		did := dropletOf[n.ID]
		d, gerr := cl.GetDroplet(cctx, did)
		if gerr != nil || d.Status != "new" {
			continue
		}
		age := time.Since(d.CreatedAt).Round(time.Second)
		if !f.stuck(d) {
			notes = append(notes, fmt.Sprintf("droplet %d (%s) is still new after %v: re-run the same command to wait for it", d.ID, d.Name, age))
			continue
		}
		if derr := cl.DeleteDroplet(cctx, d.ID); derr != nil {
			notes = append(notes, fmt.Sprintf("droplet %d (%s) never became active (still new after %v) and could not be deleted: %v", d.ID, d.Name, age, derr))
			continue
		}
		if _, uerr := store.Update(cctx, name, func(s *cluster.State) (*cluster.State, error) {
			return cluster.SetDroplet(s, n.ID, 0)
		}); uerr != nil {
			notes = append(notes, fmt.Sprintf("droplet %d (%s) never became active and was deleted; recording that failed: %v", d.ID, d.Name, uerr))
			continue
		}
		notes = append(notes, fmt.Sprintf("droplet %d (%s) never became active (still new after %v): deleted; re-run the same command to create another", d.ID, d.Name, age))
	}
	if len(notes) == 0 {
		return err
	}
	return fmt.Errorf("%s: %w", strings.Join(notes, "; "), err)
}
