// Package packer holds the dynia node image recipe (dynia-node.pkr.hcl,
// scripts/provision.sh, files/dynia-pull.service). It has no Go code: its
// tests check the recipe with the real Packer 1.9.4 and run the provisioning
// script for real in a debootstrapped Debian 12 root. See docs/image.md.
package packer
