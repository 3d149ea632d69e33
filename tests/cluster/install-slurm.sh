#!/usr/bin/env bash
# Installs Debian's Slurm and munge for the real-cluster tests (tests/test_clusters.py): only
# the programs; the tests start and stop a one-node cluster of their own. Needs root and apt-get
# (Debian or Ubuntu). Does nothing where the programs are already there.
set -euo pipefail
PACKAGES=(slurm-wlm munge)
PROGRAMS=(munged slurmctld slurmd sbatch srun sinfo squeue scancel)

missing=()
for program in "${PROGRAMS[@]}"; do command -v "$program" >/dev/null || missing+=("$program"); done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-slurm: already installed: $(slurmctld -V), munge $(munged -V 2>&1 | head -n1)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-slurm: missing ${missing[*]}: run as root to apt-get install ${PACKAGES[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "install-slurm: missing ${missing[*]} and no apt-get here: install Slurm and munge with your system's packages" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# The packages' maintainer scripts would start the system's munge and Slurm services, which the
# tests do not use (and slurmctld has no configuration to start with): where no policy says
# otherwise, forbid starting services during the install (exit 101 = "not allowed").
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt_get() { apt-get -q -o DPkg::Lock::Timeout=300 "$@"; }
for attempt in 1 2 3; do  # a mirror can be briefly out of step; try again before giving up
    if apt_get update && apt_get install -y --no-install-recommends "${PACKAGES[@]}"; then
        echo "install-slurm: installed $(slurmctld -V), munge $(munged -V 2>&1 | head -n1)"
        exit 0
    fi
    echo "install-slurm: attempt $attempt failed" >&2
    sleep $((attempt * 10))
done
echo "install-slurm: could not install ${PACKAGES[*]} with apt-get (see above)" >&2
exit 1
