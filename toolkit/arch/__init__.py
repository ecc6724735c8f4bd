"""Framework-free model descriptions and the built-in zoo."""
from edgepack.toolkit.arch.spec import ArchSpec
from edgepack.toolkit.arch.zoo import get_arch, list_archs, register

__all__ = ["ArchSpec", "get_arch", "list_archs", "register"]
