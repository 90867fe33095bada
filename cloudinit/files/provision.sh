#!/bin/bash
# provision.sh: turns a stock Debian 12 / Ubuntu 24.04 droplet into a dynia node.
#
# One script, three uses (cloudinit embeds it; Packer uploads this file):
#   - in Packer (packer/dynia-node.pkr.hcl), mode "image": the result is
#     snapshotted;
#   - at first boot of a --bootstrap droplet (written by cloud-init), mode
#     "bootstrap": the result serves at once;
#   - in a debootstrap chroot in our tests (hack/image-check.sh), mode "image".
# so a snapshot node and a bootstrap node are the same machine.
#
# Environment:
#   DYNIA_PROVISION_MODE  image (default) | bootstrap
#   DYNIA_PULL_SRC        dynia-pull binary to install (default /tmp/dynia/dynia-pull;
#                         empty: install none, bootstrap downloads it afterwards)
#   DYNIA_UNIT_SRC        systemd unit to install (default /tmp/dynia/dynia-pull.service)
#   DYNIA_EXPECT_VERSION  if set, `dynia-pull version` must print it (the
#                         snapshot name carries it: a mismatch is a wrong image)
#
# Who runs what: dynia-pull supervises haproxy and keepalived itself
# (pull.json "supervise": true, exactly as in the local sandbox), so the
# distro haproxy.service and keepalived.service are masked and their default
# configs removed: nothing listens before dynia-pull has rendered, checked and
# started a config of its own. Docker stays a normal systemd service.
set -euo pipefail

MODE=${DYNIA_PROVISION_MODE:-image}
PULL_SRC=${DYNIA_PULL_SRC-/tmp/dynia/dynia-pull}
UNIT_SRC=${DYNIA_UNIT_SRC:-/tmp/dynia/dynia-pull.service}
EXPECT_VERSION=${DYNIA_EXPECT_VERSION:-}

case $MODE in
image | bootstrap) ;;
*)
	echo "provision: DYNIA_PROVISION_MODE must be image or bootstrap, not \"$MODE\"" >&2
	exit 2
	;;
esac

log() { echo "provision: $*" >&2; }

# live: a booted system (Packer's droplet, a bootstrap droplet); not live: a
# chroot, where systemctl can only edit symlinks and must not start anything.
live=false
if [[ -d /run/systemd/system ]] && ! systemd-detect-virt --quiet --chroot 2>/dev/null; then
	live=true
fi

export DEBIAN_FRONTEND=noninteractive
# Ubuntu 24.04 ships needrestart, which would restart services (cloud-init's
# own, in bootstrap mode) from apt's hook: we restart what we change ourselves.
export NEEDRESTART_SUSPEND=1 NEEDRESTART_MODE=l
apt_get() {
	# DO images run apt-daily at boot; wait for its lock instead of failing.
	apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef \
		-o Dpkg::Options::=--force-confold "$@"
}

if [[ $MODE == image && $live == true ]] && command -v cloud-init >/dev/null; then
	# Packer connects as soon as sshd is up; cloud-init may still be
	# configuring apt. (Never in bootstrap mode: we run inside cloud-init.)
	cloud-init status --wait >/dev/null || true
fi

# Block service starts while packages install: Debian's haproxy would
# otherwise start with its default config, docker would start in a chroot.
# Only remove the policy if we created it (a chroot harness may own one).
policy=/usr/sbin/policy-rc.d
own_policy=false
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\n# installed by dynia provision.sh while packages install\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	own_policy=true
fi
cleanup() { if [[ $own_policy == true ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

log "installing packages"
apt_get update
# docker.io is Debian's (and Ubuntu's) own package: signed by the distro
# archive key we already trust, security-patched by the same
# unattended-upgrades as everything else, no third-party apt repository or
# key to add. It is older than docker-ce, and dynia only needs `docker run`.
# --no-install-recommends keeps needrestart (interactive restarts) and git out.
# wireguard-tools: `wg` to inspect the mesh keepalived's VRRP runs over
# (dynia-pull configures the kernel's WireGuard through netlink itself; the
# module ships with the Debian 12 and Ubuntu kernels).
apt_get install -y --no-install-recommends \
	haproxy keepalived docker.io curl ca-certificates iproute2 wireguard-tools \
	unattended-upgrades cloud-init

log "handing haproxy and keepalived to dynia-pull"
# mask, not just disable: a package upgrade's postinst cannot start a masked
# unit, and unattended-upgrades must never bring up the distro haproxy.
systemctl disable haproxy.service keepalived.service >/dev/null 2>&1 || true
if [[ $live == true ]]; then
	systemctl mask --now haproxy.service keepalived.service
else
	systemctl mask haproxy.service keepalived.service
fi
# A deleted conffile stays deleted across upgrades (dpkg keeps the admin's
# choice), so no default config reappears. dynia-pull writes its own.
rm -f /etc/haproxy/haproxy.cfg /etc/keepalived/keepalived.conf

log "sysctls, journald, docker, unattended-upgrades"
cat >/etc/sysctl.d/60-dynia.conf <<'CONF'
# dynia node (written by provision.sh)
# haproxy binds the Reserved IP / anchor addresses before keepalived holds them.
net.ipv4.ip_nonlocal_bind = 1
net.ipv6.ip_nonlocal_bind = 1
# Proxy traffic: deeper accept queues and more source ports to the backends.
net.core.somaxconn = 4096
net.ipv4.tcp_max_syn_backlog = 4096
net.ipv4.ip_local_port_range = 1024 65000
# Docker publishes ports through forwarding.
net.ipv4.ip_forward = 1
CONF

mkdir -p /etc/systemd/journald.conf.d
cat >/etc/systemd/journald.conf.d/60-dynia.conf <<'CONF'
# dynia node (written by provision.sh): a 10 GB droplet must not fill its disk
# with logs; a month is enough to look back at a failover.
[Journal]
Storage=persistent
SystemMaxUse=200M
RuntimeMaxUse=50M
MaxRetentionSec=1month
CONF

mkdir -p /etc/docker
if [[ ! -s /etc/docker/daemon.json ]]; then
	# The default json-file driver never rotates: cap container logs too.
	cat >/etc/docker/daemon.json <<'CONF'
{
  "log-driver": "local",
  "log-opts": {"max-size": "10m", "max-file": "3"}
}
CONF
fi

cat >/etc/apt/apt.conf.d/20auto-upgrades <<'CONF'
// dynia node (written by provision.sh): daily lists + unattended upgrades.
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
CONF
cat >/etc/apt/apt.conf.d/52dynia-unattended-upgrades <<'CONF'
// dynia node (written by provision.sh). The distro's 50unattended-upgrades
// already limits upgrades to the security archive. Never reboot on our own:
// rebooting the active node moves the Reserved IP; the operator decides when.
Unattended-Upgrade::Automatic-Reboot "false";
CONF

log "installing dynia-pull"
install -d -m 0700 /etc/dynia
install -d -m 0755 /usr/local/bin /etc/systemd/system
install -m 0644 "$UNIT_SRC" /etc/systemd/system/dynia-pull.service
if [[ -n $PULL_SRC ]]; then
	install -m 0755 "$PULL_SRC" /usr/local/bin/dynia-pull
	version=$(/usr/local/bin/dynia-pull version)
	log "dynia-pull version: $version"
	if [[ -n $EXPECT_VERSION && $version != *"$EXPECT_VERSION"* ]]; then
		log "dynia-pull reports \"$version\", expected $EXPECT_VERSION"
		exit 1
	fi
fi
if [[ $live == true ]]; then
	systemctl daemon-reload
fi
# enable only: the unit waits for /etc/dynia/pull.json (ConditionPathExists),
# which cloud-init writes at first boot of each droplet.
systemctl enable dynia-pull.service docker.service

cleanup
own_policy=false
if [[ $live == true ]]; then
	# Started only now that every unit is configured (policy-rc.d blocked
	# the postinst starts). In image mode this just checks sysctl syntax.
	sysctl --system >/dev/null
	systemctl start docker.service
fi

if [[ $MODE == image ]]; then
	log "cleaning for the snapshot"
	apt_get clean
	rm -rf /var/lib/apt/lists/*
	# Each droplet made from the snapshot must get its own machine-id
	# (DHCP client ids, journald) and run cloud-init as a new instance.
	truncate -s 0 /etc/machine-id
	rm -f /var/lib/dbus/machine-id
	cloud-init clean --logs
	rm -rf /tmp/dynia
fi
log "done ($MODE)"
