"""Changes to a Windows installation for KVM, one module per topic, with the facts only
they need; what the machine is (version, HAL, controllers, NICs) is read by
:mod:`p2vimage.inspection`."""
