"""Device setup class GUIDs Windows uses (upper case, as setupapi writes them)."""

NET = "{4D36E972-E325-11CE-BFC1-08002BE10318}"
HDC = "{4D36E96A-E325-11CE-BFC1-08002BE10318}"  # IDE/ATA/AHCI controllers
SCSI_ADAPTER = "{4D36E97B-E325-11CE-BFC1-08002BE10318}"
DISK_DRIVE = "{4D36E967-E325-11CE-BFC1-08002BE10318}"
SYSTEM = "{4D36E97D-E325-11CE-BFC1-08002BE10318}"

STORAGE_CONTROLLERS = (HDC, SCSI_ADAPTER)


def same_guid(a: str | None, b: str) -> bool:
    return a is not None and a.strip().upper() == b.upper()


def display_text(text: str | None) -> str | None:
    """Strip the ``@file.inf,%key%;`` indirection Vista+ stores in DeviceDesc values."""
    if text is None:
        return None
    if text.startswith("@") and ";" in text:
        return text.split(";", 1)[1]
    return text
