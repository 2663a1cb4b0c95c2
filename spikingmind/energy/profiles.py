"""Hardware energy profiles: per-operation energies, each with its citation, from TOML.

A profile file has three tables (and an optional fourth):

    [profile]            name, description, technology
    [constants.<key>]    value, unit, source, where, optional note   (one per published figure)
    [accounting]         which constant prices which counted quantity (see `Accounting`)
    [accounting.memory_arrays]   constant key -> capacity in bytes, for "by_footprint" memory

The loader refuses a constant without `source`/`where`, an unknown unit, a negative or
non-numeric value, and an accounting entry that names no constant; every error is a
`ProfileError` that names the file and the key.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from spikingmind.errors import ProfileError, check_known_keys

import tomllib

#: Energy units a profile may use, as multiples of one picojoule (the unit of all reports).
UNIT_TO_PJ: dict[str, float] = {"fJ": 1e-3, "pJ": 1.0, "nJ": 1e3, "uJ": 1e6, "µJ": 1e6}

#: The largest per-operation energy a profile may state: 1 uJ, above any published figure for
#: one synaptic or arithmetic operation or one memory word (DRAM: a few nJ); 1e308 pJ is a typo
#: that would price every report at infinity.
MAX_PJ = 1e6

#: Accounting value meaning "already inside the compute constant" (e.g. Loihi's measured
#: per-operation energies include the core's memory access).
INCLUDED = "included"
#: Accounting value meaning "the smallest listed array that holds the values": a network
#: of 5 KB of int8 weights reads them from an 8 KB SRAM, one of 80 KB from the 1 MB array
#: (Horowitz lists 10, 20 and 100 pJ per 64-bit read for 8 KB, 32 KB and 1 MB).
BY_FOOTPRINT = "by_footprint"

_OP_ROLES = ("ac", "mac", "add", "multiply", "neuron_update", "neuron_update_active",
             "neuron_update_inactive", "spike_routing")
_MEMORY_ROLES = ("weight_memory", "state_memory", "activation_memory")
_BIT_FIELDS = ("memory_word_bits", "weight_bits", "state_bits", "activation_bits")


@dataclass(frozen=True)
class EnergyConstant:
    """One published per-operation energy, with where it comes from."""

    key: str
    value: float
    unit: str
    source: str
    where: str
    note: str = ""
    file: str = ""

    def __post_init__(self) -> None:
        where = f"{self.file or '<profile>'}: constants.{self.key}"
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise ProfileError(f"{where}: value must be a number, got {self.value!r}")
        if not math.isfinite(self.value) or self.value < 0:
            raise ProfileError(f"{where}: value must be a finite non-negative energy, got {self.value!r}")
        if self.unit not in UNIT_TO_PJ:
            raise ProfileError(f"{where}: unknown unit {self.unit!r}; use one of {', '.join(UNIT_TO_PJ)}")
        if self.pj > MAX_PJ:
            raise ProfileError(f"{where}: {self.value!r} {self.unit} is above {MAX_PJ:g} pJ (1 uJ) per operation, "
                               "more than any published per-operation energy; check the value and unit")
        for name in ("source", "where"):
            text = getattr(self, name)
            if not isinstance(text, str) or not text.strip():
                raise ProfileError(f"{where}: missing citation field '{name}' (every constant needs source and where)")

    @property
    def pj(self) -> float:
        """The energy in picojoules."""
        return float(self.value) * UNIT_TO_PJ[self.unit]

    @property
    def citation(self) -> str:
        return f"{self.source}, {self.where}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("file")
        out["pJ"] = self.pj
        return out


@dataclass(frozen=True)
class Accounting:
    """Which constant prices which counted quantity.

    Op roles (`ac`, `mac`, `add`, `multiply`, `neuron_update`, `neuron_update_active`,
    `neuron_update_inactive`, `spike_routing`) name a constant or are absent (None).
    Memory roles name the constant of a 64-bit-word read (`memory_word_bits`) of the array
    that holds weights / membrane state / activations, `"included"`, or `"by_footprint"`:
    the smallest array of `memory_arrays` (constant key -> capacity in bytes) that holds the
    network's values of that kind (the caller says how many bytes that is). A value of
    `b` bits costs b / memory_word_bits of a word read (values packed into words).
    `mac_host_profile`: profile that prices MACs (and their memory) when this one cannot
    (a neuromorphic core that only takes binary spikes).
    """

    ac: str | None = None
    mac: str | None = None
    add: str | None = None
    multiply: str | None = None
    neuron_update: str | None = None
    neuron_update_active: str | None = None
    neuron_update_inactive: str | None = None
    spike_routing: str | None = None
    weight_memory: str | None = None
    state_memory: str | None = None
    activation_memory: str | None = None
    memory_word_bits: int = 64
    weight_bits: int = 32
    state_bits: int = 32
    activation_bits: int = 32
    write_priced_as_read: bool = True
    mac_host_profile: str | None = None
    memory_arrays: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Price:
    """Energy of one counted event in pJ, and how it was obtained."""

    pj: float
    formula: str
    constants: tuple[str, ...] = ()


@dataclass(frozen=True)
class HardwareProfile:
    """A validated hardware profile (see module docstring)."""

    name: str
    description: str
    technology: str
    path: str
    constants: Mapping[str, EnergyConstant]
    accounting: Accounting = field(default_factory=Accounting)

    def __post_init__(self) -> None:
        acc = self.accounting
        for role in _OP_ROLES + _MEMORY_ROLES:
            key = getattr(acc, role)
            if key is None or (role in _MEMORY_ROLES and key == INCLUDED):
                continue
            if role in _MEMORY_ROLES and key == BY_FOOTPRINT:
                if not acc.memory_arrays:
                    raise ProfileError(f"{self.path}: accounting.{role}: \"{BY_FOOTPRINT}\" needs "
                                       "[accounting.memory_arrays] (constant key -> capacity in bytes)")
                continue
            if key not in self.constants:
                raise ProfileError(
                    f"{self.path}: accounting.{role}: names constant {key!r}, which the profile does not define "
                    f"(defined: {', '.join(sorted(self.constants))})"
                )
        for key, capacity in acc.memory_arrays.items():
            if key not in self.constants:
                raise ProfileError(f"{self.path}: accounting.memory_arrays.{key}: names no constant of the profile")
            if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
                raise ProfileError(f"{self.path}: accounting.memory_arrays.{key}: capacity must be a positive "
                                   f"integer number of bytes, got {capacity!r}")
        for name in _BIT_FIELDS:
            bits = getattr(acc, name)
            if isinstance(bits, bool) or not isinstance(bits, int) or bits <= 0:
                raise ProfileError(f"{self.path}: accounting.{name}: must be a positive integer, got {bits!r}")
        parts = [self.constants.get(k) for k in ("mac", "multiply", "add")]
        if all(parts) and not math.isclose(parts[0].pj, parts[1].pj + parts[2].pj, rel_tol=1e-9):
            raise ProfileError(
                f"{self.path}: constants.mac: {parts[0].pj} pJ is not multiply + add = {parts[1].pj + parts[2].pj} pJ"
            )
        if acc.ac is None:
            raise ProfileError(f"{self.path}: accounting.ac: every profile must price a synaptic accumulate")
        if acc.neuron_update is None and (acc.neuron_update_active is None or acc.neuron_update_inactive is None):
            raise ProfileError(
                f"{self.path}: accounting.neuron_update: give neuron_update, or both neuron_update_active "
                "and neuron_update_inactive"
            )

    def constant(self, key: str) -> EnergyConstant:
        try:
            return self.constants[key]
        except KeyError:
            raise ProfileError(f"{self.path}: no constant {key!r}") from None

    def price(self, role: str, footprint_bytes: float | None = None) -> Price | None:
        """Energy (pJ) of one event of `role`, or None when this profile cannot price it.

        Roles: the op roles of `Accounting`, plus `weight_read`, `state_read`,
        `state_write`, `activation_read`, `activation_write` (one value of the configured
        bit width each). `footprint_bytes`: how many bytes of that kind the network holds,
        needed where the memory is `"by_footprint"` (ProfileError without it, or when no
        listed array is large enough).
        """
        acc = self.accounting
        if role in ("neuron_update_active", "neuron_update_inactive") and getattr(acc, role) is None:
            role = "neuron_update"
        if role in _OP_ROLES:
            key = getattr(acc, role)
            if key is None:
                return None
            const = self.constants[key]
            return Price(const.pj, f"{key}", (key,))
        memory = {
            "weight_read": ("weight_memory", "weight_bits"),
            "state_read": ("state_memory", "state_bits"),
            "state_write": ("state_memory", "state_bits"),
            "activation_read": ("activation_memory", "activation_bits"),
            "activation_write": ("activation_memory", "activation_bits"),
        }
        if role not in memory:
            raise ProfileError(f"{self.path}: unknown energy role {role!r}")
        array_role, bits_field = memory[role]
        key = getattr(acc, array_role)
        if key is None:
            return None
        if key == INCLUDED:
            return Price(0.0, "included in the compute constants", ())
        if role.endswith("_write") and not acc.write_priced_as_read:
            return None
        bits = getattr(acc, bits_field)
        if key == BY_FOOTPRINT:
            key = self.array_for(footprint_bytes, f"accounting.{array_role}")
        fraction = bits / acc.memory_word_bits
        verb = "write priced as read: " if role.endswith("_write") else ""
        return Price(self.constants[key].pj * fraction, f"{verb}{key} x {bits}/{acc.memory_word_bits} bits", (key,))

    def array_for(self, footprint_bytes: float | None, what: str = "memory") -> str:
        """The smallest of `memory_arrays` that holds `footprint_bytes` (its constant key)."""
        if footprint_bytes is None or not footprint_bytes >= 0:
            raise ProfileError(f"{self.path}: {what} is \"{BY_FOOTPRINT}\": the network's size in bytes is needed "
                               f"to choose an array, got {footprint_bytes!r}")
        fitting = [(capacity, key) for key, capacity in self.accounting.memory_arrays.items()
                   if capacity >= footprint_bytes]
        if not fitting:
            largest = max(self.accounting.memory_arrays.values())
            raise ProfileError(f"{self.path}: {what}: {footprint_bytes:.0f} bytes fit none of the listed arrays "
                               f"(largest {largest} bytes)")
        return min(fitting)[1]

    def mac_host(self) -> "HardwareProfile":
        """Profile that prices MACs: this one, or the named host profile when it lacks a MAC."""
        if self.accounting.mac is not None:
            return self
        if self.accounting.mac_host_profile is None:
            raise ProfileError(f"{self.path}: accounting: no 'mac' and no 'mac_host_profile' to price real-valued inputs")
        host = load_profile(self.accounting.mac_host_profile)
        if host.accounting.mac is None:
            raise ProfileError(f"{self.path}: accounting.mac_host_profile: {host.name!r} cannot price a MAC either")
        return host

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "technology": self.technology,
            "path": self.path,
            "constants": {key: const.to_dict() for key, const in self.constants.items()},
            "accounting": asdict(self.accounting),
        }


def profiles_dir() -> Path:
    from spikingmind.hardware_profiles import profiles_dir as bundled

    return bundled()


def list_profiles() -> list[str]:
    """Names of the bundled profiles, sorted."""
    return sorted(path.stem for path in profiles_dir().glob("*.toml"))


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load a bundled profile by name (`loihi`) or any profile file by path (`x.toml`)."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_file():
            raise ProfileError(f"{path}: hardware profile file not found")
    else:
        path = profiles_dir() / f"{text}.toml"
        if not path.is_file():
            raise ProfileError(f"unknown hardware profile {text!r}; known: {', '.join(list_profiles())}")
    return _parse(path)


def _parse(path: Path) -> HardwareProfile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ProfileError(f"{path}: cannot read TOML: {error}") from None
    head = data.get("profile", {})
    if not isinstance(head, dict):
        raise ProfileError(f"{path}: [profile] must be a table")
    raw_constants = data.get("constants")
    if not isinstance(raw_constants, dict) or not raw_constants:
        raise ProfileError(f"{path}: constants: no [constants.<key>] tables")
    constants: dict[str, EnergyConstant] = {}
    allowed = {"value", "unit", "source", "where", "note"}
    for key, entry in raw_constants.items():
        if not isinstance(entry, dict):
            raise ProfileError(f"{path}: constants.{key}: must be a table with value, unit, source, where")
        unknown = set(entry) - allowed
        if unknown:
            raise ProfileError(f"{path}: constants.{key}: unknown field(s) {', '.join(sorted(unknown))}")
        for required in ("value", "unit", "source", "where"):
            if required not in entry:
                raise ProfileError(f"{path}: constants.{key}: missing '{required}'")
        constants[key] = EnergyConstant(
            key=key, value=entry["value"], unit=entry["unit"], source=entry["source"],
            where=entry["where"], note=entry.get("note", ""), file=str(path),
        )
    raw_acc = data.get("accounting", {})
    if not isinstance(raw_acc, dict):
        raise ProfileError(f"{path}: [accounting] must be a table")
    check_known_keys(raw_acc, (f.name for f in fields(Accounting)), f"{path}: accounting: unknown key(s) {{keys}}",
                     ProfileError)
    for key, value in raw_acc.items():
        if key in _OP_ROLES + _MEMORY_ROLES + ("mac_host_profile",) and not isinstance(value, str):
            raise ProfileError(f"{path}: accounting.{key}: must be a string, got {value!r}")
    if "memory_arrays" in raw_acc and not isinstance(raw_acc["memory_arrays"], dict):
        raise ProfileError(f"{path}: accounting.memory_arrays: must be a table of constant key = bytes")
    if raw_acc.get("mac_host_profile") == path.stem:
        raise ProfileError(f"{path}: accounting.mac_host_profile: a profile cannot be its own host")
    return HardwareProfile(
        name=str(head.get("name", path.stem)),
        description=str(head.get("description", "")),
        technology=str(head.get("technology", "")),
        path=str(path),
        constants=constants,
        accounting=Accounting(**raw_acc),
    )
