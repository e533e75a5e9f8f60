"""How results go out: disk images (atomically), libvirt XML, reports."""
