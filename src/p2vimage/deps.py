"""Import the system-provided bindings with a message naming the Debian package.

libguestfs and hivex bindings are not on PyPI in a usable form (the PyPI
"hivex" is an unrelated project), so they come from Debian and a missing one
must say which package to install rather than end in an ImportError trace.
"""

from __future__ import annotations

import importlib
import shutil
from types import ModuleType

from .errors import MissingDependencyError

_MODULE_PACKAGES = {
    "guestfs": "python3-guestfs",
    "hivex": "python3-hivex",
    "nbd": "python3-libnbd",
    "libvirt": "python3-libvirt",
}

_PROGRAM_PACKAGES = {
    "qemu-img": "qemu-utils",
    "qemu-nbd": "qemu-utils",
    "cabextract": "cabextract",
    "hivexregedit": "libhivex-bin",
    "virt-xml-validate": "libvirt-clients",
    "virsh": "libvirt-clients",
    "nbdkit": "nbdkit",
    "ssh": "openssh-client",
}


def require_module(name: str) -> ModuleType:
    """Import ``name`` or raise MissingDependencyError naming its Debian package."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        package = _MODULE_PACKAGES.get(name, name)
        raise MissingDependencyError(
            f"the Python module '{name}' is missing: install the Debian package {package} "
            f"(apt-get install {package}) and use a venv made with --system-site-packages"
        ) from exc
    if name == "hivex" and not hasattr(module, "Hivex"):
        raise MissingDependencyError(
            "the 'hivex' module found is not libguestfs' hivex (the PyPI package of that name "
            "is unrelated): pip uninstall hivex, then apt-get install python3-hivex"
        )
    return module


def require_program(name: str) -> str:
    """Return the path of an external program or raise naming its Debian package."""
    path = shutil.which(name)
    if path is None:
        package = _PROGRAM_PACKAGES.get(name, name)
        raise MissingDependencyError(
            f"the program '{name}' is missing: install the Debian package {package}"
        )
    return path


def guestfs() -> ModuleType:
    return require_module("guestfs")


def hivex() -> ModuleType:
    return require_module("hivex")


def libvirt() -> ModuleType:
    """libvirt's Python binding, its default error handler silenced (it prints every
    error on stderr; ours are raised and reported once)."""
    module = require_module("libvirt")
    module.registerErrorHandler(lambda _ctx, _err: None, None)
    return module
