# The dynia node image: Debian 12 (or Ubuntu 24.04) with haproxy, keepalived,
# Docker and dynia-pull preinstalled, snapshotted as
# dynia-node-<version>-<timestamp> — the name prefix `dynia node create-ha`
# looks for. See docs/image.md.
#
#   make image VERSION=1.2.3            # or, from the repository root:
#   packer build -var version=1.2.3 packer/dynia-node.pkr.hcl
#
# The API token comes from DIGITALOCEAN_TOKEN (never a variable, so it cannot
# end up in a var file or in `packer inspect` output).

packer {
  required_version = ">= 1.9.4"
  required_plugins {
    digitalocean = {
      version = ">= 1.4.1"
      source  = "github.com/digitalocean/digitalocean"
    }
  }
}

variable "version" {
  type        = string
  description = "dynia-pull version baked into the image; also part of the snapshot name."
  validation {
    condition     = can(regex("^[0-9A-Za-z][0-9A-Za-z.+_-]*$", var.version))
    error_message = "The version must be letters, digits, dots, dashes, pluses or underscores (e.g. 1.2.3)."
  }
}

variable "dynia_pull_binary" {
  type        = string
  default     = "bin/dynia-pull"
  description = "Path of the linux/amd64 dynia-pull binary to install (relative to where packer runs)."
}

variable "region" {
  type        = string
  default     = "sgp1"
  description = "Region the build droplet runs in; the snapshot is created there."
}

variable "snapshot_regions" {
  type        = list(string)
  default     = []
  description = "Further regions to copy the snapshot to (a snapshot is only usable where it exists)."
}

variable "size" {
  type        = string
  default     = "s-1vcpu-1gb"
  description = "Build droplet size. The snapshot also boots on larger sizes, never on smaller disks."
}

variable "base_image" {
  type        = string
  default     = "debian-12-x64"
  description = "Base image slug: debian-12-x64 (default) or ubuntu-24-04-x64."
  validation {
    condition     = contains(["debian-12-x64", "ubuntu-24-04-x64"], var.base_image)
    error_message = "The base_image must be debian-12-x64 or ubuntu-24-04-x64."
  }
}

variable "tags" {
  type        = list(string)
  default     = ["dynia", "dynia-node-image"]
  description = "Tags for the temporary build droplet and the snapshot."
}

locals {
  timestamp     = formatdate("YYYYMMDDhhmmss", timestamp())
  snapshot_name = "dynia-node-${var.version}-${local.timestamp}"
}

source "digitalocean" "node" {
  image            = var.base_image
  region           = var.region
  size             = var.size
  ssh_username     = "root"
  droplet_name     = "dynia-image-build-${local.timestamp}"
  snapshot_name    = local.snapshot_name
  snapshot_regions = var.snapshot_regions
  tags             = var.tags
  snapshot_tags    = var.tags
  monitoring       = false
  state_timeout    = "10m"
  snapshot_timeout = "60m"
}

build {
  sources = ["source.digitalocean.node"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/dynia"]
  }

  provisioner "file" {
    source      = var.dynia_pull_binary
    destination = "/tmp/dynia/dynia-pull"
  }

  provisioner "file" {
    source      = "${path.root}/../cloudinit/files/dynia-pull.service"
    destination = "/tmp/dynia/dynia-pull.service"
  }

  # The same script provisions --bootstrap droplets at first boot and is run
  # for real in a Debian chroot by `make image-check`. scripts/provision.sh is
  # a symlink to cloudinit/files/provision.sh, the one copy (the CLI embeds it).
  provisioner "shell" {
    script = "${path.root}/scripts/provision.sh"
    environment_vars = [
      "DYNIA_PROVISION_MODE=image",
      "DYNIA_PULL_SRC=/tmp/dynia/dynia-pull",
      "DYNIA_UNIT_SRC=/tmp/dynia/dynia-pull.service",
      "DYNIA_EXPECT_VERSION=${var.version}",
    ]
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} {{ .Path }}"
  }

  # packer-manifest.json carries the snapshot id for the CI workflow.
  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
    custom_data = {
      version    = var.version
      base_image = var.base_image
    }
  }
}
