"""virtio-win drivers: read the media, choose for the guest, stage offline."""
