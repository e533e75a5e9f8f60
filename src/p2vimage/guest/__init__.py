"""Access to the guest: the libguestfs appliance, its disks and its registry hives."""
