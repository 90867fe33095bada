package container

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/dynia/dynia/internal/extcmd"
)

// MetadataIP is DigitalOcean's droplet metadata service
// (https://docs.digitalocean.com/reference/api/metadata/). It serves the
// droplet's user-data, which carries the node's secrets, to anything that
// can reach it, so an app container must not.
const MetadataIP = "169.254.169.254"

// DockerUserChain is the filter chain Docker reserves for the operator's
// rules: dockerd jumps to it first from FORWARD and never flushes it
// (https://docs.docker.com/network/packet-filtering-firewalls/).
const DockerUserChain = "DOCKER-USER"

// metadataComment tags dynia's rule, so it is recognisable in
// `iptables -S` and the check for it is exact.
const metadataComment = "dynia: containers must not reach the metadata service"

// Iptables runs iptables with args in the network namespace that holds
// dockerd's bridge, returning its combined output.
type Iptables func(ctx context.Context, args ...string) ([]byte, error)

// ExecIptables runs the iptables on PATH (Debian 12: the nf_tables
// backend) with -w, waiting for the xtables lock instead of failing while
// dockerd edits its own rules.
func ExecIptables(ctx context.Context, args ...string) ([]byte, error) {
	out, err := extcmd.Combined(exec.CommandContext(ctx, "iptables", append([]string{"-w"}, args...)...))
	return []byte(out), err
}

// MetadataRule is the rule BlockMetadata keeps at the top of DOCKER-USER:
// forwarded traffic to the metadata service is dropped. Containers on
// Docker's bridges reach 169.254.169.254 only through FORWARD; the node's
// own processes (dynia-pull reads the metadata) go through OUTPUT and are
// not affected.
func MetadataRule() []string {
	return []string{"-d", MetadataIP + "/32", "-m", "comment", "--comment", metadataComment, "-j", "DROP"}
}

// BlockMetadata installs MetadataRule in DOCKER-USER, idempotently: a
// second call changes nothing. It creates the chain when dockerd has not
// yet (dockerd 20.10 keeps an existing DOCKER-USER and its rules and adds
// its RETURN after them), so it can run before dockerd starts at boot and
// close the window in which restarted containers could reach the metadata
// service. iptables rules do not survive a reboot: call it at every
// dynia-pull start and before every Start. ipt nil means ExecIptables.
func BlockMetadata(ctx context.Context, ipt Iptables) error {
	if ipt == nil {
		ipt = ExecIptables
	}
	if _, err := ipt(ctx, "-n", "-L", DockerUserChain); err != nil {
		if _, err := ipt(ctx, "-N", DockerUserChain); err != nil {
			// Created concurrently by dockerd? Then the listing works now.
			if _, err2 := ipt(ctx, "-n", "-L", DockerUserChain); err2 != nil {
				return fmt.Errorf("block metadata service: create chain %s: %w", DockerUserChain, err)
			}
		}
	}
	rule := append([]string{DockerUserChain}, MetadataRule()...)
	if _, err := ipt(ctx, append([]string{"-C"}, rule...)...); err == nil {
		return nil
	}
	if _, err := ipt(ctx, append([]string{"-I"}, rule...)...); err != nil {
		return fmt.Errorf("block metadata service: %w", err)
	}
	return nil
}
