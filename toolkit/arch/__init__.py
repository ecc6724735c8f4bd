"""Framework-free model descriptions and the built-in zoo."""
from toolkit.arch.spec import ArchSpec
from toolkit.arch.zoo import get_arch, list_archs, register

__all__ = ["ArchSpec", "get_arch", "list_archs", "register"]
