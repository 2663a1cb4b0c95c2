"""Energy estimate: op and memory counts x cited per-op energies, SNN against ANN baselines.

Every number here is an *estimate*: counts (measured from recorded spikes and the ONNX
graph) times published per-operation energies (hardware profiles). Memory is accounted in
the spirit of Lemaire et al. (ICONIP 2022): one weight read per synaptic event (SNN) or
per MAC (ANN), one membrane read + write per neuron update per state variable.

Accountings and verdict. The report counts both sides two ways: `decision_only`, what a
deployed policy computes for one decision (the SNN's decision cone, `snn_counts.decision_cone`;
the ANN twin's `--decision-only` ONNX graph), and `full_window`, every token of the window
as the graphs are written. The verdict uses `decision_only` and says so. The SNN is priced
under every given SNN profile (every cited Loihi parameterisation): "cheaper" is said only
where the SNN costs less than a baseline under all of them, with each profile's technology
node (Loihi 14 nm against CMOS 45 nm) named next to the ratio.

Memory sized to the network. Where a profile prices weights `by_footprint`, each side's
weight reads are priced on the smallest memory array that holds its weights (the ANN: all its
parameters; the SNN's host: the real-valued encoder's): an SRAM array, or DRAM for weights
larger than the largest SRAM array the profile cites.

Break-even spike rate. Split the SNN energy into a spike-driven part V (synaptic ACs,
their weight reads, spike routing: all proportional to the number of spikes) and a fixed
part F (neuron updates, membrane traffic, the real-valued encoder, biases). Assuming the
spike-driven counts scale linearly with the mean spike rate r (same spatial pattern, only
more or fewer spikes), E_snn(r) = F + V * r / r0, with r0 the measured rate. Setting
E_snn(r*) = E_ann gives r* = r0 * (E_ann - F) / V. When E_ann <= F the SNN costs more than
the baseline even without a single spike, and there is no break-even rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spikingmind.energy.onnx_counts import OnnxCounts
from spikingmind.energy.profiles import HardwareProfile, Price
from spikingmind.energy.snn_counts import SNNCounts
from spikingmind.errors import ProfileError
from spikingmind.io import atomic_path

ASSUMPTIONS = (
    "Estimate, not a measurement: counted operations x published per-operation energies.",
    "SNN counts come from spikes recorded on the given decisions and are averaged per decision (T steps each).",
    "Decision-only accounting (the verdict's): each side counts only what one decision needs (SNN: the "
    "elements the decision token's output depends on; ANN: its --decision-only ONNX graph).",
    "The SNN's real-valued encoder sees the same tokens at every SNN step: its MACs are counted once per decision.",
    "Weights priced 'by_footprint' are read from the smallest cited memory array that holds them (DRAM beyond the largest SRAM).",
    "One weight read per synaptic event (SNN) and per MAC (ANN): no on-chip weight reuse on either side.",
    "One membrane read and one write per neuron update and state variable; SRAM writes priced as reads.",
    "Values are packed into 64-bit SRAM words: a b-bit value costs b/64 of a word read.",
    "Break-even: spike-driven energy (ACs, their weight reads, spike routing) scales linearly with the mean "
    "spike rate; everything else (neuron updates, membrane traffic, encoder MACs, biases) is fixed.",
    "ANN transcendental ops (exp, erf, tanh, sqrt) have no cited energy and are left unpriced: the ANN "
    "estimate is a lower bound, which makes the comparison conservative for the SNN.",
    "ANN divides are priced as one multiply and compares/selects as one add (no cited figure for either).",
)


@dataclass
class EnergyLine:
    """Energy of one layer/node in pJ per decision."""

    name: str
    op_type: str
    compute_pj: float
    memory_pj: float
    total_pj: float
    share: float = 0.0
    spike_driven_pj: float = 0.0
    components: dict[str, float] = field(default_factory=dict)
    group: str = ""  # ANN: the module the node belongs to (for per-module plots)


@dataclass
class BaselineComparison:
    """The ANN twin priced with one profile, against the SNN."""

    profile: str
    ann_compute_pj: float
    ann_memory_pj: float
    ann_total_pj: float
    snn_over_ann: float
    ann_over_snn: float
    verdict: str
    break_even_spike_rate: float | None
    break_even_note: str
    unpriced_ops: dict[str, float]
    uncounted_nodes: list[dict[str, str]]
    layers: list[EnergyLine]


@dataclass
class EnergyReport:
    """Everything `energy-report` shows (rendered by the CLI), writes as JSON and plots."""

    kind: str
    snn_profile: str
    mac_host_profile: str | None
    time_steps: int
    decisions: int
    spike_rate: float
    activation_sparsity: float
    snn_compute_pj: float
    snn_memory_pj: float
    snn_total_pj: float
    snn_fixed_pj: float
    snn_spike_driven_pj: float
    snn_layers: list[EnergyLine]
    baselines: list[BaselineComparison]
    constants: list[dict[str, Any]]
    assumptions: list[str]
    notes: list[str]
    counts: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    accounting: str = "decision_only"  # the accounting of the flat fields above (and of the verdicts)
    technology: str = ""  # of snn_profile
    profiles: list[dict[str, Any]] = field(default_factory=list)  # every SNN profile, this accounting
    other_accountings: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. full_window
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # per baseline, under every SNN profile

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Pricer:
    """Looks up per-event energies of one profile and remembers every constant it used.

    `weight_bytes`: the size of the weights this pricer's side holds (for weights priced
    `by_footprint`), in bytes at the profile's weight width (from a count of weights)."""

    def __init__(self, profile: HardwareProfile, used: dict[tuple[str, str], HardwareProfile], weights: float = 0):
        self.profile = profile
        self.used = used
        self.weight_bytes = weights * profile.accounting.weight_bits / 8

    def get(self, role: str) -> Price | None:
        price = self.profile.price(role, self.weight_bytes if role == "weight_read" else None)
        if price is not None:
            for key in price.constants:
                self.used[(self.profile.name, key)] = self.profile
        return price

    def need(self, role: str, why: str) -> float:
        price = self.get(role)
        if price is None:
            raise ProfileError(f"{self.profile.path}: profile {self.profile.name!r} has no '{role}' energy, needed for {why}")
        return price.pj

    def optional(self, role: str) -> float:
        price = self.get(role)
        return 0.0 if price is None else price.pj


def price_snn(counts: SNNCounts, profile: HardwareProfile, used: dict | None = None) -> tuple[list[EnergyLine], list[str]]:
    """Per-layer SNN energy (pJ per decision). Returns the lines and notes on pricing choices."""
    used = {} if used is None else used
    # weights each device holds (for memory priced by footprint): a neuromorphic chip without a
    # MAC holds the spike-driven layers, its host the real-valued ones; otherwise one device all
    synaptic = [l for l in counts.layers if l.kind == "synaptic"]
    host_side = [l for l in synaptic if l.effective_macs > 0 or not l.input_binary]
    split = profile.accounting.mac is None
    host_weights = sum(l.weights for l in (host_side if split else synaptic))
    chip = _Pricer(profile, used, sum(l.weights for l in synaptic if not split or l not in host_side))
    notes: list[str] = []
    host = None
    lines = []
    for layer in counts.layers:
        parts: dict[str, float] = {}
        spike_driven = 0.0
        if layer.kind == "synaptic":
            real_valued = layer.effective_macs > 0 or not layer.input_binary
            if real_valued and host is None:
                host = _Pricer(profile.mac_host(), used, host_weights)
                if host.profile is not profile:
                    notes.append(
                        f"{profile.name} has no MAC figure and takes binary spikes only: real-valued layers run on a "
                        f"host core priced with {host.profile.name} (MACs, their weights and inputs, biases)."
                    )
            ac = chip.need("ac", "synaptic accumulates") if layer.effective_acs else 0.0
            ac_weight = chip.need("weight_read", "weight reads") if layer.effective_acs else 0.0
            parts["ac"] = layer.effective_acs * ac
            parts["weight_read"] = layer.effective_acs * ac_weight
            other_reads = layer.weight_reads - layer.effective_acs  # MAC weights and biases
            if real_valued:
                parts["mac"] = layer.effective_macs * host.need("mac", f"the real-valued layer {layer.name!r}")
                parts["bias_add"] = layer.bias_adds * (host.need("add", f"the biases of {layer.name!r}") if layer.bias_adds else 0.0)
                parts["weight_read"] += other_reads * (host.need("weight_read", "weight reads") if other_reads else 0.0)
                parts["input_read"] = layer.input_reads * (host.need("activation_read", "input reads") if layer.input_reads else 0.0)
            else:
                add = chip.get("add")
                if add is None:
                    # a neuromorphic core holds the bias in the neuron compartment (part of the update)
                    parts["bias_add"] = 0.0
                    if layer.bias_adds and not any("biases are" in n for n in notes):
                        notes.append(f"{profile.name}: biases are neuron-compartment parameters, included in the neuron update.")
                else:
                    parts["bias_add"] = layer.bias_adds * add.pj
                    parts["weight_read"] += other_reads * (chip.need("weight_read", "bias reads") if other_reads else 0.0)
            spike_driven = layer.effective_acs * (ac + ac_weight)
        else:
            active = chip.need("neuron_update_active", "neuron updates")
            inactive = chip.need("neuron_update_inactive", "neuron updates")
            parts["neuron_update"] = layer.neuron_updates_active * active + (
                layer.neuron_updates - layer.neuron_updates_active) * inactive
            parts["ac"] = layer.effective_acs * (chip.need("ac", "identity synapses") if layer.effective_acs else 0.0)
            parts["spike_routing"] = layer.spikes * chip.optional("spike_routing")
            parts["state_read"] = layer.state_reads * (chip.need("state_read", "membrane reads") if layer.state_reads else 0.0)
            parts["state_write"] = layer.state_writes * (chip.need("state_write", "membrane writes") if layer.state_writes else 0.0)
            spike_driven = parts["ac"] + parts["spike_routing"]
        memory = sum(v for k, v in parts.items() if k.endswith("_read") or k.endswith("_write"))
        total = sum(parts.values())
        lines.append(EnergyLine(name=layer.name, op_type=layer.node_type, compute_pj=total - memory, memory_pj=memory,
                                total_pj=total, spike_driven_pj=spike_driven, components=parts))
    _shares(lines)
    if chip.get("spike_routing") is None:
        notes.append(f"{profile.name}: no cited spike-routing energy; routing is not priced.")
    elif "spike_within_tile" in profile.constants:
        notes.append(f"{profile.name}: every spike priced as within-tile; cross-tile hops need a placement (lower bound).")
    return lines, notes


def price_ann(counts: OnnxCounts, profile: HardwareProfile, used: dict | None = None) -> list[EnergyLine]:
    """Per-node ANN energy (pJ per inference at batch 1)."""
    used = {} if used is None else used
    p = _Pricer(profile, used, counts.parameters)
    why = "the ANN baseline"
    mac, add, mul = p.need("mac", why), p.need("add", why), p.need("multiply", why)
    weight, act_read, act_write = p.need("weight_read", why), p.need("activation_read", why), p.need("activation_write", why)
    lines = []
    for node in counts.nodes:
        parts = {
            "mac": node.macs * mac,
            "add": node.adds * add,
            "multiply": node.muls * mul,
            "divide_as_multiply": node.divs * mul,
            "compare_as_add": node.compares * add,
            "weight_read": node.parameter_reads * weight,
            "activation_read": node.activation_reads * act_read,
            "activation_write": node.activation_writes * act_write,
        }
        memory = parts["weight_read"] + parts["activation_read"] + parts["activation_write"]
        total = sum(parts.values())
        lines.append(EnergyLine(name=node.name, op_type=node.op_type, group=node.module,
                                compute_pj=total - memory, memory_pj=memory,
                                total_pj=total, components=parts))
    _shares(lines)
    return lines


def break_even_spike_rate(spike_rate: float, fixed_pj: float, spike_driven_pj: float, baseline_pj: float
                          ) -> tuple[float | None, str]:
    """Spike rate r* with F + V * r*/r0 = E_ann (module docstring); None when there is none."""
    if baseline_pj <= fixed_pj:
        return None, (f"none: the SNN's fixed cost alone ({format_pj(fixed_pj)}) exceeds the baseline "
                      f"({format_pj(baseline_pj)}), so the SNN costs more even at zero spikes")
    if spike_driven_pj <= 0 or spike_rate <= 0:
        return None, "none: no spike-driven energy was recorded, the SNN costs less at any rate that was measured"
    rate = spike_rate * (baseline_pj - fixed_pj) / spike_driven_pj
    if rate > 1.0:
        return rate, f"{rate:.1%} is above 100%: the SNN costs less at every possible spike rate"
    return rate, f"equal energy at a mean spike rate of {rate:.2%} (measured {spike_rate:.2%})"


@dataclass
class Accounted:
    """The counts of one accounting: what each side is charged for one decision."""

    name: str  # "decision_only" or "full_window"
    snn: SNNCounts
    ann: OnnxCounts | None = None


ACCOUNTING_NOTES = {
    "decision_only": "what a deployed policy computes for one decision: the SNN's decision cone (every block but "
                     "the last on the tokens up to the decision token, the last block's k and v there and the rest "
                     "at the decision token), the ANN's --decision-only graph",
    "full_window": "every token of the window on both sides, as the graphs are written",
}


def _check_baseline(ann: OnnxCounts, label: str) -> None:
    """An ANN baseline that counts to nothing is an error, never 0 pJ (a ratio against 0 is meaningless)."""
    if not ann.nodes or ann.total("macs") <= 0:
        raise ProfileError(f"{ann.model}: the {label} baseline has no countable operations "
                           f"({len(ann.nodes)} counted node(s), {len(ann.uncounted)} uncounted): refusing to price it at 0")


def _price_side(snn: SNNCounts, snn_profile: HardwareProfile, ann: OnnxCounts | None,
                baseline_profiles: list[HardwareProfile], used: dict) -> dict[str, Any]:
    """One SNN profile and one accounting: SNN lines and totals, and each ANN baseline against them."""
    snn_lines, notes = price_snn(snn, snn_profile, used)
    total = sum(l.total_pj for l in snn_lines)
    memory = sum(l.memory_pj for l in snn_lines)
    spike_driven = sum(l.spike_driven_pj for l in snn_lines)
    fixed = total - spike_driven
    baselines = []
    for profile in baseline_profiles if ann is not None else []:
        lines = price_ann(ann, profile, used)
        ann_total = sum(l.total_pj for l in lines)
        ann_memory = sum(l.memory_pj for l in lines)
        ratio, inverse = total / ann_total, ann_total / total
        rate, why = break_even_spike_rate(snn.spike_rate, fixed, spike_driven, ann_total)
        baselines.append(BaselineComparison(
            profile=profile.name, ann_compute_pj=ann_total - ann_memory, ann_memory_pj=ann_memory,
            ann_total_pj=ann_total, snn_over_ann=ratio, ann_over_snn=inverse,
            verdict=_verdict(ratio, snn_profile, profile), break_even_spike_rate=rate,
            break_even_note=why, unpriced_ops={"transcendentals": ann.total("transcendentals")},
            uncounted_nodes=list(ann.uncounted), layers=lines,
        ))
    return {"lines": snn_lines, "notes": notes, "total": total, "memory": memory, "spike_driven": spike_driven,
            "fixed": fixed, "baselines": baselines}


def _summary(profile: HardwareProfile, side: dict[str, Any], technologies: dict[str, str]) -> dict[str, Any]:
    return {"profile": profile.name, "technology": profile.technology, "snn_total_pj": side["total"],
            "snn_compute_pj": side["total"] - side["memory"], "snn_memory_pj": side["memory"],
            "snn_fixed_pj": side["fixed"], "snn_spike_driven_pj": side["spike_driven"],
            "baselines": [{"profile": b.profile, "technology": technologies[b.profile], "ann_total_pj": b.ann_total_pj,
                           "snn_over_ann": b.snn_over_ann, "break_even_spike_rate": b.break_even_spike_rate,
                           "verdict": b.verdict} for b in side["baselines"]]}


def overall_verdict(ratios: dict[str, float], technologies: dict[str, str], ann_profile: HardwareProfile,
                    accounting: str) -> dict[str, Any]:
    """The SNN against one ANN baseline under every SNN profile: "cheaper" only when it holds under all."""
    cheaper = all(r < 1.0 for r in ratios.values())
    detail = ", ".join(f"{_ratio_text(r)} ({name}, {technologies[name]})" for name, r in ratios.items())
    versus = f"the ANN ({ann_profile.name}, {ann_profile.technology})"
    if cheaper:
        statement = f"the SNN is cheaper than {versus} under every SNN profile: {detail}"
    elif all(r > 1.0 for r in ratios.values()):
        statement = f"the SNN costs MORE than {versus} under every SNN profile: {detail}"
    else:
        statement = f"the profiles disagree, so no verdict: {detail} against {versus}"
    return {"ann_profile": ann_profile.name, "ann_technology": ann_profile.technology, "accounting": accounting,
            "ratios": dict(ratios), "technologies": dict(technologies), "cheaper_under_every_profile": cheaper,
            "statement": f"{statement} ({accounting.replace('_', '-')} accounting)"}


def build_report(accountings: list[Accounted], snn_profiles: list[HardwareProfile],
                 baseline_profiles: list[HardwareProfile], provenance: dict[str, Any] | None = None) -> EnergyReport:
    """Price every accounting's SNN counts under every SNN profile and its ANN counts under each
    baseline profile. The first accounting and the first SNN profile fill the report's flat
    fields (the per-layer tables); `profiles`, `full_window` (any other accounting) and
    `verdicts` hold the rest. The verdicts use the first accounting."""
    if not accountings or not snn_profiles:
        raise ProfileError("build_report needs at least one accounting and one SNN profile")
    for accounted in accountings:
        if accounted.ann is not None:
            _check_baseline(accounted.ann, accounted.name)
    used: dict[tuple[str, str], HardwareProfile] = {}
    technologies = {p.name: p.technology for p in [*snn_profiles, *baseline_profiles]}
    priced = {(a.name, p.name): _price_side(a.snn, p, a.ann, baseline_profiles, used)
              for a in accountings for p in snn_profiles}
    main, primary = accountings[0], snn_profiles[0]
    side = priced[(main.name, primary.name)]
    notes = list(side["notes"])
    for accounted in accountings:
        if accounted.ann is not None and accounted.ann.uncounted:
            ops = sorted({u["op_type"] for u in accounted.ann.uncounted})
            notes.append(f"ANN ({accounted.name}): {len(accounted.ann.uncounted)} node(s) not counted "
                         f"({', '.join(ops)}): ANN totals are a lower bound.")
    notes.append(f"Verdict accounting: {main.name} ({ACCOUNTING_NOTES.get(main.name, main.name)}).")
    verdicts = []
    if main.ann is not None:
        for ann_profile in baseline_profiles:
            ratios = {p.name: next(b.snn_over_ann for b in priced[(main.name, p.name)]["baselines"]
                                   if b.profile == ann_profile.name) for p in snn_profiles}
            verdicts.append(overall_verdict(ratios, technologies, ann_profile, main.name))
    constants = [
        {"profile": prof.name, **prof.constants[key].to_dict()} for (_, key), prof in sorted(used.items())
    ]
    snn = main.snn
    return EnergyReport(
        kind="estimate", snn_profile=primary.name,
        mac_host_profile=primary.mac_host().name if snn.total("effective_macs") else None,
        time_steps=snn.time_steps, decisions=snn.decisions, spike_rate=snn.spike_rate,
        activation_sparsity=snn.activation_sparsity, snn_compute_pj=side["total"] - side["memory"],
        snn_memory_pj=side["memory"], snn_total_pj=side["total"], snn_fixed_pj=side["fixed"],
        snn_spike_driven_pj=side["spike_driven"], snn_layers=side["lines"], baselines=side["baselines"],
        constants=constants, assumptions=list(ASSUMPTIONS), notes=notes,
        counts={"snn": snn.to_dict(), "ann": main.ann.to_dict() if main.ann is not None else None},
        provenance=dict(provenance or {}), accounting=main.name, technology=primary.technology,
        profiles=[_summary(p, priced[(main.name, p.name)], technologies) for p in snn_profiles],
        other_accountings={a.name: {"profiles": [_summary(p, priced[(a.name, p.name)], technologies)
                                                 for p in snn_profiles],
                                    "spike_rate": a.snn.spike_rate,
                                    "counts": {"snn": a.snn.to_dict(), "ann": a.ann.to_dict() if a.ann else None}}
                           for a in accountings[1:]},
        verdicts=verdicts,
    )


def _ratio_text(ratio: float) -> str:
    if ratio > 1.0:
        return f"{ratio:.3g}x MORE"
    if ratio < 1.0:
        return f"{1 / ratio:.3g}x less ({ratio:.3g}x)"
    return "the same"


def _verdict(ratio: float, snn: HardwareProfile, ann: HardwareProfile) -> str:
    """One SNN profile against one baseline (the word "cheaper" is kept for `overall_verdict`)."""
    snn_name, ann_name = f"{snn.name}, {snn.technology}", f"{ann.name}, {ann.technology}"
    if ratio > 1.0:
        return f"the SNN ({snn_name}) costs {ratio:.3g}x MORE than the ANN ({ann_name})"
    if ratio < 1.0:
        return f"the SNN ({snn_name}) costs {1 / ratio:.3g}x less than the ANN ({ann_name})"
    return f"the SNN ({snn_name}) and the ANN ({ann_name}) cost the same"


def _shares(lines: list[EnergyLine]) -> None:
    total = sum(l.total_pj for l in lines)
    for line in lines:
        line.share = line.total_pj / total if total > 0 else 0.0


def format_pj(value: float) -> str:
    """Human-readable energy from pJ ("86.2 uJ"): the one formatter of the report, CLI and README."""
    for unit, scale in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} pJ"


def _ann_group(name: str) -> str:
    """Module path of an exported node name ('/blocks.0/attn/q/MatMul' -> 'blocks.0/attn/q')."""
    stripped = name.strip("/")
    return stripped.rsplit("/", 1)[0] if "/" in stripped else "(top level)"


def plot_energy(report: EnergyReport, path: str | Path) -> Path:
    """Write a PNG bar chart: totals, SNN per layer, ANN per module, compute vs memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    n_snn = len(report.snn_layers)
    groups: dict[str, dict[str, float]] = {}
    for b in report.baselines:
        for line in b.layers:
            group = line.group or _ann_group(line.name)
            groups.setdefault(group, {}).setdefault(b.profile, 0.0)
            groups[group][b.profile] += line.total_pj
    height = max(4.0, 0.28 * max(n_snn, len(groups), 4) + 2)
    fig, axes = plt.subplots(1, 3, figsize=(18, height), gridspec_kw={"width_ratios": [1, 1.4, 1.4]})
    names = [f"SNN\n{report.snn_profile}"] + [f"ANN\n{b.profile}" for b in report.baselines]
    compute = [report.snn_compute_pj] + [b.ann_compute_pj for b in report.baselines]
    memory = [report.snn_memory_pj] + [b.ann_memory_pj for b in report.baselines]
    ax = axes[0]
    ax.bar(names, compute, label="compute", color="#4c72b0")
    ax.bar(names, memory, bottom=compute, label="memory", color="#dd8452")
    ax.set_ylabel("pJ per decision")
    ax.set_title("Total (estimate)")
    ax.legend()
    ax = axes[1]
    labels = [l.name for l in report.snn_layers]
    ax.barh(labels, [l.compute_pj for l in report.snn_layers], color="#4c72b0", label="compute")
    ax.barh(labels, [l.memory_pj for l in report.snn_layers], left=[l.compute_pj for l in report.snn_layers],
            color="#dd8452", label="memory")
    ax.invert_yaxis()
    ax.set_xlabel("pJ per decision")
    ax.set_title(f"SNN per layer ({report.snn_profile}, spike rate {report.spike_rate:.1%})")
    ax.legend()
    ax = axes[2]
    if groups:
        keys = list(groups)
        width = 0.8 / max(1, len(report.baselines))
        for i, b in enumerate(report.baselines):
            ys = [k + i * width for k in range(len(keys))]
            ax.barh(ys, [groups[k].get(b.profile, 0.0) for k in keys], height=width, label=b.profile)
        ax.set_yticks([k + 0.4 - width / 2 for k in range(len(keys))], keys)
        ax.invert_yaxis()
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no ANN baseline", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("pJ per inference")
    ax.set_title("ANN twin per module (estimate)")
    fig.suptitle("Energy estimate per decision: counted ops x cited per-op energies (see the report for sources)")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
